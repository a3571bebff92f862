"""Session-wide: engines started as processes (``ivr serve`` in the CLI, lifecycle and
bench tests) talk to the fake Asterisk, which compresses time (``time_scale=0``): its
talk times are not what the engine's own clock sees, so the engine must not cap talk by
that clock there. Tests of the cap set ``talk_clock_cap`` themselves."""

from __future__ import annotations

import os

os.environ.setdefault("IVR_TALK_CLOCK_CAP", "0")

# The server secret lives apart from the database (issue 9): in a state directory of the
# session's own, never the real ~/.local/state.
if "IVR_TEST_STATE" not in os.environ:
    import tempfile

    os.environ["IVR_TEST_STATE"] = os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="ivr-state-")


# --- a real PostgreSQL server (see tests/postgres.py) ----------------------------------
from collections.abc import Iterator  # noqa: E402 - after the environment above is set

import pytest  # noqa: E402

from tests.postgres import PostgresServer, running_server  # noqa: E402


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with running_server() as server:
        yield server
