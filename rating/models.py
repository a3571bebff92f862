"""Plain records the store hands out. Times are integer milliseconds since the epoch (UTC)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .billing import BillingRule
from .numbers import PatternSet
from .routes import DestinationPolicy, Route
from .zones import ZoneTariff


class CardStatus(enum.StrEnum):
    NEW = "new"            # bought, never used
    ACTIVE = "active"      # activated by a first PIN call or an operator binding
    EXHAUSTED = "exhausted"
    BLOCKED = "blocked"
    EXPIRED = "expired"


@dataclass(frozen=True)
class Project:
    id: int
    name: str
    numbers: tuple[str, ...]          # E.164 access numbers
    service: str                      # Asterisk dial string of the operator's service
    fallback: str | None
    ring_timeout_s: int
    language: str
    region: str                       # ISO country for national number forms
    price_per_minute_cents: int
    currency: str
    rule: BillingRule
    warning_s: int
    pin_length: int
    max_bound_numbers: int
    max_simultaneous_calls: int
    card_validity_days: int | None
    # Routing (issue 11): the forwarding rules in order (the first ones are the migrated
    # service and fallback), the zone of the office hours, the trunk numbers are dialled
    # through, which numbers may be dialled, the factors per zone and the monthly quota.
    routes: tuple[Route, ...] = ()
    timezone: str = "UTC"
    trunk: str = ""
    policy: DestinationPolicy = field(default_factory=DestinationPolicy)
    tariff: ZoneTariff = field(default_factory=ZoneTariff)
    evict_oldest_binding: bool = False  # a PIN binding above the limit drops the oldest line
    new_pin_when_used_up: bool = False  # a bound line whose card is used up may type another card's PIN


@dataclass(frozen=True)
class Card:
    id: int
    project_id: int
    note: str
    blocked: bool
    balance_s: int           # settled seconds left (sum of the ledger)
    reserved_s: int          # held by calls in progress
    active_calls: int
    price_cents: int
    created_ms: int
    activated_ms: int | None
    expires_ms: int | None

    @property
    def available_s(self) -> int:
        return self.balance_s - self.reserved_s

    def status(self, now_ms: int) -> CardStatus:
        if self.blocked:
            return CardStatus.BLOCKED
        if self.expires_ms is not None and now_ms >= self.expires_ms:
            return CardStatus.EXPIRED
        if self.balance_s <= 0:
            return CardStatus.EXHAUSTED
        return CardStatus.ACTIVE if self.activated_ms is not None else CardStatus.NEW


@dataclass(frozen=True)
class Binding:
    caller: str
    card_id: int
    bound_ms: int
    source: str   # "ivr" | "operator"


@dataclass(frozen=True)
class BindingEvent:
    """One line of a card's binding history: who bound or unbound which line, when, how."""

    card_id: int
    caller: str
    action: str   # bind | unbind | refused (a PIN binding above the card's limit)
    source: str   # ivr (by PIN) | operator | evicted (dropped for a newer line) | moved (to another card)
    actor: str    # the operator's name, or the uniqueid of the call
    at_ms: int


@dataclass(frozen=True)
class BindResult:
    bound: bool                 # False: the card has its limit of lines; nothing changed
    evicted: tuple[str, ...]    # lines dropped to make room (only when the project chose eviction)


@dataclass(frozen=True)
class PinAttempt:
    """The throttle's answer before a PIN prompt: an attempt recorded (``attempt_id``) or
    why not (``refused``: ``line``, ``project`` or ``busy``); the counts it decided on."""

    attempt_id: int | None
    refused: str | None
    by_caller: int
    in_project: int
    entering: int


@dataclass(frozen=True)
class PinFailureSummary:
    project_id: int
    caller_key: str
    failures: int
    first_ms: int
    last_ms: int


@dataclass(frozen=True)
class Grant:
    """Card time held for one call: at most ``max_talk_s`` of talk, debiting at most ``reserved_s``."""

    reservation_id: int
    card_id: int
    reserved_s: int
    max_talk_s: int
    available_before_s: int
    quota_left_s: int = 0          # the card's included seconds left this month (at factor 1000)


@dataclass(frozen=True)
class LedgerEntry:
    id: int
    card_id: int
    at_ms: int
    kind: str          # purchase | recharge | debit | adjustment
    seconds: int       # signed
    amount_cents: int
    reference: str


@dataclass(frozen=True)
class BlacklistEntry:
    id: int
    project_id: int | None     # None = global
    pattern: str
    direction: str             # inbound | outbound
    reason: str
    created_ms: int


@dataclass
class Cdr:
    uniqueid: str
    project_id: int | None
    card_id: int | None
    caller_raw: str
    caller_e164: str | None
    dialled: str
    destination: str | None
    start_ms: int
    answer_ms: int | None
    end_ms: int
    talk_s: int
    debited_s: int
    outcome: str
    hangup_side: str
    # How the call was routed and rated (issue 11): service | forwarded | fallback | closed |
    # refused | blocked; the rule (position) and leg (1 = first Dial) that answered or was
    # tried last; the destination's zone and number type; the factor and quota it was rated at.
    call_type: str = ""
    route_position: int | None = None
    leg: int | None = None
    zone: str = ""
    number_type: str = ""
    factor_pm: int = 1000
    quota_used_s: int = 0
    # The price the call was rated at (issue 12): revenue is always this CDR's own price,
    # never the project's price of today. None when written without one: the store fills
    # in the project's price as it writes the CDR (a call without a project has none).
    price_per_minute_cents: int | None = None
    currency: str | None = None


# --- added for the operator's CLI ------------------------------------------
@dataclass(frozen=True)
class BlockedNumber(BlacklistEntry):
    """A blacklist entry with who added it (``--by``, default the OS user)."""

    added_by: str = ""


@dataclass(frozen=True)
class AccountSettings:
    """The operator's account: one per database, in one currency (None until the first project)."""

    currency: str | None
    info_limit_cents: int      # owing more than this: every CLI command warns
    lock_limit_cents: int      # owing more than this: no new cards or recharges
    suspend_calls: bool        # when locked, new calls hear "service suspended"


@dataclass(frozen=True)
class AccountLine:
    """One line of the operator's account: a charge (card purchase, recharge), a payment
    or a payment's correction.

    ``amount_cents`` is signed from the operator's side: charges are positive (owed),
    payments negative, a correction positive (it takes back part or all of a payment)."""

    at_ms: int
    kind: str                  # purchase | recharge | payment | correction
    amount_cents: int
    card_id: int | None
    project_id: int | None
    seconds: int
    reference: str
    entered_by: str = ""
    entry_id: int | None = None    # a payment's or correction's id (``ivr account correct ID``)
    corrects: int | None = None    # a correction: the payment it corrects


@dataclass(frozen=True)
class Payment:
    """A payment as entered, with what corrections took back of it (``corrected_cents``),
    or a correction itself (``corrects`` the payment's id; ``amount_cents`` taken back)."""

    id: int
    at_ms: int
    amount_cents: int          # positive
    currency: str
    reference: str
    entered_by: str
    corrects: int | None = None
    corrected_cents: int = 0   # a payment: the sum of its corrections

    @property
    def left_cents(self) -> int:
        """What a further correction can still take back of this payment."""
        return 0 if self.corrects is not None else self.amount_cents - self.corrected_cents


@dataclass(frozen=True)
class Routing:
    """What the call path needs of the configuration: projects by access number (E.164)
    and every blocked number. A snapshot; the store hands out a new one after a change."""

    by_number: dict[str, Project]
    regions: tuple[str, ...]
    blocked: tuple[BlacklistEntry, ...]
    _sets: dict[tuple[int, str], PatternSet] = field(default_factory=dict, compare=False, repr=False)

    def blocks(self, project_id: int, direction: str) -> list[BlacklistEntry]:
        """The project's own and the global entries for ``direction``."""
        return [b for b in self.blocked
                if b.direction == direction and b.project_id in (None, project_id)]

    def block_set(self, project: Project, direction: str) -> PatternSet:
        """``blocks`` prepared for matching in the project's region, built once per snapshot."""
        key = (project.id, direction)
        if key not in self._sets:
            self._sets[key] = PatternSet((b.pattern for b in self.blocks(project.id, direction)), project.region)
        return self._sets[key]


@dataclass(frozen=True)
class BoundReservation:
    """A bound line's card and either the hold on it or why there is none."""

    card: Card
    grant: Grant | None
    refusal: Exception | None


@dataclass(frozen=True)
class HoldCall:
    """The call a hold is for, kept with the hold so that any engine can write its CDR."""

    caller_raw: str
    caller_e164: str | None
    dialled: str
    start_ms: int
    # The Asterisk the call came from (the FastAGI peer's address): with several
    # Asterisk boxes on one database, reconciliation judges only its own Asterisk's holds.
    asterisk: str | None = None


@dataclass(frozen=True)
class HoldSettlement:
    """What settling a hold by its id did.

    ``state``: "settled" (this call debited it and wrote the CDR), "already_settled"
    (someone did before: nothing changed), "released" (expired and released: nothing
    changed), "unknown" (no such hold, or one of another call: nothing changed)."""

    state: str
    hold_id: int
    card_id: int | None = None
    talk_s: int = 0
    debited_s: int = 0


@dataclass(frozen=True)
class OpenHold:
    """A hold not settled yet, as reconciliation and ``ivr calls`` see it."""

    hold_id: int
    uniqueid: str
    card_id: int
    project_id: int
    project: str
    seconds: int            # held
    max_talk_s: int | None  # None: a hold from before migration 4
    created_ms: int
    expires_ms: int
    caller_raw: str | None
    asterisk: str | None = None   # None: unknown (a hold from before migration 7)
