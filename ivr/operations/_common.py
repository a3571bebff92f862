"""Limits, names and the account-policy errors shared by the operator's operations."""

from __future__ import annotations

from rating.errors import InvalidInput, RatingError

LANGUAGES = ("de", "en")
MAX_MINUTES = 9999 * 60
MAX_BATCH = 10_000
MAX_NOTE = 200
DIRECTIONS = ("inbound", "outbound")
CARD_SORTS = ("created", "remaining", "activated")
REPORT_BY = ("month", "number", "card", "outcome", "access", "project", "type", "zone")
CALL_TYPES = ("service", "forwarded", "fallback", "closed", "refused", "blocked")
ZONES = ("internal", "national", "national_mobile", "eu", "europe", "world")
_SEPARATORS = str.maketrans("", "", " -/()\t")


class CurrencyMismatch(InvalidInput):
    """The account is kept in one currency; this would mix in another."""


class AccountLocked(RatingError):
    """The account owes more than its lock limit: no purchases or recharges until a payment."""
