"""The PostgreSQL backend, for several engines on one database (not yet: this lands next)."""

from __future__ import annotations

from ..errors import InvalidDatabase
from ._schema import SchemaMode
from .base import OperatorStore, StoreObserver

__all__ = ["PostgresStore"]


def PostgresStore(url: str, *, observer: StoreObserver | None = None,  # noqa: N802 - stands in for the class
                  schema: SchemaMode = "check") -> OperatorStore:
    raise InvalidDatabase("PostgreSQL is not supported yet")
