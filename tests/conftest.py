"""Fixtures every test package may use: a real PostgreSQL server (see ``tests/postgres.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.postgres import PostgresServer, need_postgres


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer(need_postgres())
    try:
        server.start()
        yield server
    finally:
        server.destroy()
