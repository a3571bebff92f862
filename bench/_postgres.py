"""The benchmark's PostgreSQL: the tests' throw-away cluster (``tests/postgres.py``:
Debian's binaries, ``initdb`` into a temporary directory, loopback, ``fsync=off``)
and the CPU its processes spend, so a PostgreSQL row can say what the server cost
besides the engine.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["available", "server_cpu_seconds", "start"]


def available() -> str | None:
    """None when a PostgreSQL server can be started here, else why not."""
    try:
        from tests.postgres import _bin_dir
    except ImportError as exc:  # pragma: no cover - run from the repository, with the test extras
        return f"tests/postgres.py cannot be imported ({exc})"
    bin_dir = _bin_dir()
    if bin_dir is None or not (bin_dir / "initdb").exists():
        return "PostgreSQL is not installed (apt-get install postgresql, or IVR_PG_BIN=/path/to/bin)"
    try:
        import asyncpg  # type: ignore[import-untyped]  # noqa: F401 - the engine's driver
    except ModuleNotFoundError:
        return "asyncpg is not installed (pip install -e '.[test]')"
    return None


def start() -> Any:
    """A running server (``tests.postgres.PostgresServer``); ``destroy()`` it afterwards."""
    from tests.postgres import PostgresServer, _bin_dir

    bin_dir = _bin_dir()
    assert bin_dir is not None
    server = PostgresServer(bin_dir)
    server.start()
    return server


def _postmaster_pid(server: Any) -> int:
    data = Path(server.data)
    return int((data / "postmaster.pid").read_text().split("\n", 1)[0])


def server_cpu_seconds(server: Any) -> float:
    """User + system CPU of the postmaster, its live children (backends, WAL writer,
    checkpointer …) and the children it already reaped."""
    pm = _postmaster_pid(server)
    text = Path(f"/proc/{pm}/stat").read_text()
    fields = text[text.rindex(")") + 2:].split()
    total = sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime stime cutime cstime
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()
        if int(fields[1]) == pm:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total
