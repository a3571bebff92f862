"""The store: one contract (``base``), two backends (``sqlite``, ``postgres``), picked
from the ``database`` setting by ``open_store``."""

from ._open import Database, open_store, parse_database

__all__ = ["Database", "open_store", "parse_database"]
