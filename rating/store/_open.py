"""The ``database`` setting → a store: the one place that picks the backend.

    ivr.sqlite3, ./data/ivr.db, /var/lib/ivr/ivr.sqlite3   a file: SQLite
    sqlite:PATH, sqlite:///abs/path                         SQLite, said explicitly (file-URL form:
                                                            ``sqlite:///var/x.db`` is /var/x.db)
    postgresql://user:pass@host:port/db, postgres://…       PostgreSQL (libpq URL, multi-host too)
    :memory:                                                SQLite in memory (tests)

Anything else — an empty value, another scheme (``mysql://``), ``postgresql:`` without
``//`` — is refused (InvalidDatabase), never taken for a file name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from ..errors import InvalidDatabase
from ._schema import SchemaMode

if TYPE_CHECKING:
    from .base import FailureObserver, OperatorStore, StoreObserver

__all__ = ["Database", "open_store", "parse_database"]

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


@dataclass(frozen=True)
class Database:
    """A parsed ``database`` setting: the backend and its file path or URL."""

    kind: Literal["sqlite", "postgresql"]
    target: str          # the SQLite path, or the PostgreSQL URL as given

    @property
    def path(self) -> Path | None:
        return Path(self.target) if self.kind == "sqlite" and self.target != ":memory:" else None

    def shown(self) -> str:
        """For messages and ``ivr db status``: a URL without its password."""
        if self.kind == "sqlite":
            return self.target
        parts = urlsplit(self.target)
        if parts.password is None:
            return self.target
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()


def parse_database(value: str) -> Database:
    """Raises InvalidDatabase for anything that is neither a file path nor a known URL."""
    text = value.strip()
    if not text:
        raise InvalidDatabase("the database setting is empty: give a SQLite file path or a postgresql:// URL")
    match = _SCHEME.match(text)
    if match is None:
        return Database("sqlite", text)
    scheme = match.group(1).lower()
    rest = text[match.end():]
    if scheme in ("postgresql", "postgres"):
        if not rest.startswith("//"):
            raise InvalidDatabase(f"{value!r} is not a PostgreSQL URL: write postgresql://user@host:port/db")
        return Database("postgresql", text)
    if scheme == "sqlite":
        if rest.startswith("//"):
            host, _, path = rest[2:].partition("/")
            if host:
                raise InvalidDatabase(f"{value!r}: a SQLite URL has no host: write sqlite:///abs/path or"
                                      " sqlite:relative/path")
            rest = "/" + path
        if not rest or rest == "/":
            raise InvalidDatabase(f"{value!r} names no SQLite file")
        return Database("sqlite", rest)
    raise InvalidDatabase(f"{value!r} is neither a file path nor a known database URL"
                          " (postgresql://…, sqlite:PATH)")


def open_store(value: str | Database, *, observer: StoreObserver | None = None, schema: SchemaMode = "check",
               must_exist: bool = False, budget_ms: int = 5000,
               on_failure: FailureObserver | None = None, min_connections: int = 1) -> OperatorStore:
    """A store for the ``database`` setting, not yet opened (``await store.open()``).
    ``schema``: what ``open`` does with an older schema (``_schema.check_schema``).
    ``budget_ms``: how long an operation may wait for the database before it fails with
    StoreUnavailable (the engine's call path: ``store_budget_ms``; the CLI waits 5 s):
    SQLite's busy timeout for a write lock, PostgreSQL's whole operation (pool, connect,
    statements).
    ``must_exist``: a SQLite file that does not exist is refused instead of created
    (commands that only read). ``on_failure`` hears of every StoreUnavailable (metrics).
    ``min_connections``: PostgreSQL connections opened at once and kept (the engine's warm pool).

    Raises:
        InvalidDatabase.
    """
    db = value if isinstance(value, Database) else parse_database(value)
    if must_exist and db.path is not None and not db.path.exists():
        raise InvalidDatabase(f"there is no database at {db.target} (check the database setting,"
                              " or start one with: ivr project create …)")
    if db.kind == "postgresql":
        try:
            from .postgres import PostgresStore  # the driver only when PostgreSQL is used
        except ModuleNotFoundError as exc:
            raise InvalidDatabase(f"PostgreSQL needs the asyncpg driver ({exc.name} is missing):"
                                  " pip install 'ivr-prepaid[postgres]'") from exc

        return PostgresStore(db.target, observer=observer, schema=schema, on_failure=on_failure,
                             budget_ms=budget_ms, min_size=min_connections)
    from .sqlite import SqliteStore

    return SqliteStore(db.target, observer=observer, schema=schema, busy_timeout_ms=budget_ms,
                       on_failure=on_failure)
