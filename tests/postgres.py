"""A real PostgreSQL server for the tests, and the backends the store suite runs against.

``PostgresServer`` runs Debian's binaries (``/usr/lib/postgresql/*/bin``, or
``IVR_PG_BIN``): ``initdb`` into a temporary directory, ``postgres`` on loopback at a
free port, torn down at the end of the session. Without PostgreSQL the tests that
need it skip with the reason; with ``IVR_REQUIRE_POSTGRES=1`` (set by ``.ci/run``)
they fail instead, so CI can never pass by skipping them.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

__all__ = ["PostgresServer", "need_postgres", "store_backends"]


def _bin_dir() -> Path | None:
    if os.environ.get("IVR_PG_BIN"):
        return Path(os.environ["IVR_PG_BIN"])
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """One throw-away cluster; ``url(db)`` for a database in it (user ``ivr``, trust auth on loopback)."""

    def __init__(self, bin_dir: Path, *, standby_of: PostgresServer | None = None) -> None:
        """A new cluster (initdb), or with ``standby_of`` a streaming replica of that running
        server (``pg_basebackup -R``: a hot standby, read-only until ``promote``)."""
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="ivr-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.running = False
        # initdb and postgres refuse to run as root: as root (CI), run them as the postgres user.
        self._as: list[str] = []
        if os.geteuid() == 0:
            self._as = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.root, "postgres")
        if standby_of is not None:
            self._run([str(self.bin / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(standby_of.port), "-U", "ivr",
                       "-D", str(self.data), "-R", "-X", "stream", "--no-sync"])
        else:
            self._run([str(self.bin / "initdb"), "-D", str(self.data), "-U", "ivr", "--auth=trust", "-E", "UTF8",
                       "--no-sync"])

    def _run(self, cmd: list[str]) -> None:
        result = subprocess.run([*self._as, *cmd], capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{cmd[0]} failed: {result.stderr.strip() or result.stdout.strip()}")

    def start(self) -> None:
        """Start (or restart, on the same port and data) and wait until it accepts connections. fsync is
        off (the OS keeps what was written; the tests never lose power), commits still wait for the WAL."""
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root}"
                   " -c fsync=off -c full_page_writes=off -c max_connections=200")
        self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"), "-o", options,
                   "-w", "-t", "60", "start"])
        self.running = True

    def stop(self) -> None:
        """Stop at once (immediate: as a crash or a failover looks to the engines)."""
        if self.running:
            self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "-t", "60", "stop"])
            self.running = False

    def promote(self) -> None:
        """A standby becomes a primary (read-write), as a failover does."""
        self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-t", "60", "promote"])

    def _pids(self) -> list[int]:
        """The postmaster and its children (backends, checkpointer, …)."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == postmaster:
                children.append(int(stat.parent.name))
        return [*children, postmaster]

    def pause(self) -> None:
        """Freeze every process of the server (SIGSTOP): connections stay open, nothing
        answers — a hung server, or a network that drops packets."""
        for pid in self._pids():
            os.kill(pid, signal.SIGSTOP)

    def resume(self) -> None:
        for pid in reversed(self._pids()):
            os.kill(pid, signal.SIGCONT)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://ivr@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        self._run([str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "ivr", name])
        return self.url(name)

    def destroy(self) -> None:
        if self.running:
            try:
                self.resume()  # a paused server would not stop
            except (OSError, ValueError):
                pass
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def need_postgres() -> Path:
    """The binaries' directory, or skip (fail on CI) with the reason."""
    bin_dir = _bin_dir()
    if bin_dir is None or not (bin_dir / "initdb").exists():
        reason = ("PostgreSQL is not installed (apt-get install postgresql; or IVR_PG_BIN=/path/to/bin):"
                  " the PostgreSQL backend is not tested")
        if os.environ.get("IVR_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        import asyncpg  # type: ignore[import-untyped]  # noqa: F401 - the driver must be there too
    except ModuleNotFoundError:
        reason = "asyncpg is not installed (pip install -e '.[test]'): the PostgreSQL backend is not tested"
        if os.environ.get("IVR_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return bin_dir


_counter = iter(range(1, 1_000_000))


def _sqlite(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return str(tmp_path / "store.sqlite3")


def _postgresql(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database(f"t{os.getpid()}_{next(_counter)}")


def store_backends() -> list[Any]:
    """pytest params: a function (request, tmp_path) -> a fresh database's setting."""
    backends: list[tuple[str, Callable[[pytest.FixtureRequest, Path], str]]] = [
        ("sqlite", _sqlite), ("postgresql", _postgresql)]
    return [pytest.param(fn, id=name) for name, fn in backends]


@contextmanager
def running_server() -> Iterator[PostgresServer]:
    """A fresh cluster of its own, started, destroyed at the end (skip or fail as
    ``need_postgres`` says when there are no binaries)."""
    server = PostgresServer(need_postgres())
    try:
        server.start()
        yield server
    finally:
        server.destroy()
