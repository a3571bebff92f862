"""Errors of the rating layer. No sqlite3 or asyncpg error leaves ``rating/store/``.

    RatingError
     ├── NotFound              unknown project, card, number, entry
     ├── AlreadyExists         a name or number is taken
     ├── InvalidInput          a value the store refuses (negative minutes, bad pattern …)
     ├── CardUnusable          the card cannot take a call now
     │    ├── CardBlocked
     │    ├── CardExpired
     │    ├── InsufficientBalance
     │    └── CardInUse         the simultaneous-calls limit is reached
     ├── InvalidDatabase       the ``database`` setting is neither a file path nor a known URL
     ├── SchemaMismatch        the database's schema is older (not migrated) or newer than this code
     └── StoreUnavailable      the database failed (locked too long, disk, unreachable, corruption)
"""

from __future__ import annotations


class RatingError(Exception):
    """Base of every error raised by ``rating``."""


class NotFound(RatingError):
    pass


class AlreadyExists(RatingError):
    pass


class InvalidInput(RatingError):
    pass


class CardUnusable(RatingError):
    pass


class CardBlocked(CardUnusable):
    pass


class CardExpired(CardUnusable):
    pass


class InsufficientBalance(CardUnusable):
    pass


class CardInUse(CardUnusable):
    pass


class InvalidDatabase(RatingError):
    pass


class SchemaMismatch(RatingError):
    pass


class StoreUnavailable(RatingError):
    pass
