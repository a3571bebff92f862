import enum


class Outcome(enum.StrEnum):
    """How a call ended, as written in its CDR."""

    ANSWERED = "ANSWERED"
    BUSY = "BUSY"
    NO_ANSWER = "NO_ANSWER"
    FAILED = "FAILED"              # congestion, channel unavailable, bad destination
    NO_CREDIT = "NO_CREDIT"
    CARD_IN_USE = "CARD_IN_USE"
    CARD_BLOCKED = "CARD_BLOCKED"
    CARD_EXPIRED = "CARD_EXPIRED"
    PIN_FAILED = "PIN_FAILED"
    PIN_THROTTLED = "PIN_THROTTLED"  # PIN entry refused: too many wrong PINs, or too many callers entering one
    BLOCKED_CALLER = "BLOCKED_CALLER"
    BLOCKED_DESTINATION = "BLOCKED_DESTINATION"  # the service/fallback number is blocked outbound
    UNKNOWN_NUMBER = "UNKNOWN_NUMBER"
    SUSPENDED = "SUSPENDED"        # the operator's account is locked and calls are suspended
    CLOSED = "CLOSED"              # outside the office hours of every rule: the closed prompt, no debit
    ABANDONED = "ABANDONED"        # the caller hung up before being connected
    LOST = "LOST"                  # Dial never returned (ring + limit + margin): the hold is left to reconciliation
    INTERRUPTED = "INTERRUPTED"    # engine shutdown cut the call's supervision during the Dial
    RECONCILED = "RECONCILED"      # estimated: the call ended while no engine could be reached and
                                   # its facts were lost too (ivr/reconcile.py: the estimation policy)
    ERROR = "ERROR"                # an engine fault (logged with the uniqueid)


class HangupSide(enum.StrEnum):
    CALLER = "caller"
    CALLEE = "callee"
    LIMIT = "limit"        # the card's time ran out: Asterisk's L() cut the call
    ENGINE = "engine"      # the flow ended the call (refusal, goodbye)
    NETWORK = "network"    # the AGI connection was lost
    UNKNOWN = "unknown"
