"""Process plumbing for the benchmark: CPU and memory of another process read from
``/proc`` (Linux), the file-descriptor limit, starting and stopping servers.

CPU is the process's own user + system time (``/proc/<pid>/stat`` fields 14 and 15,
all threads, so the aiosqlite worker thread counts too), never wall time.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Server", "cpu_seconds", "free_port", "memory", "raise_fd_limit", "self_cpu_seconds"]

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (all its threads)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = text[text.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def self_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def memory(pid: int) -> dict[str, int]:
    """Resident set now and its peak, in bytes (``VmRSS``, ``VmHWM``)."""
    out = {"rss_bytes": 0, "peak_rss_bytes": 0}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            out["rss_bytes"] = int(line.split()[1]) * 1024
        elif line.startswith("VmHWM:"):
            out["peak_rss_bytes"] = int(line.split()[1]) * 1024
    return out


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def raise_fd_limit(wanted: int) -> tuple[int, int]:
    """Raise this process's soft RLIMIT_NOFILE towards ``wanted`` (never above the hard
    limit); children inherit it. Returns (soft, hard) in force afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A server process under test: the engine or a reference."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM (the engine's graceful shutdown), then SIGKILL if it lingers."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start(name: str, argv: list[str], *, port: int, log_path: Path, env: dict[str, str] | None = None,
          ready: str = "connect", timeout_s: float = 30.0) -> Server:
    """Start ``argv`` (in ``env``, default ours) with stdout and stderr to ``log_path``
    and wait until it serves.

    ``ready="connect"``: a TCP connect to ``port`` succeeds (the engine copes with a
    connection closed before its headers). ``ready="line"``: the log file shows a line
    ``LISTENING <port>`` — for panoramisk, whose FastAGI server spins forever on a
    connection closed before the end of its headers, so it must never be probed.

    Raises:
        RuntimeError: the process exited or did not listen within ``timeout_s``.
    """
    log = open(log_path, "wb")  # noqa: SIM115 - handed to the child, closed below
    try:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=dict(os.environ) if env is None else env)
    finally:
        log.close()
    server = Server(name=name, proc=proc, port=port, log_path=log_path)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{name} exited with {proc.returncode} before serving:\n{tail}")
        if ready == "line":
            if f"LISTENING {port}" in log_path.read_text(errors="replace"):
                return server
        else:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                return server
        time.sleep(0.05)
    server.stop(5)
    raise RuntimeError(f"{name} did not listen on port {port} within {timeout_s} s")


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds per live thread of ``pid``, keyed ``"<name> <tid>"``."""
    out: dict[str, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            name = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
            out[f"{name} {tid}"] = cpu_seconds_path(Path(f"/proc/{pid}/task/{tid}/stat"))
        except (FileNotFoundError, ProcessLookupError):
            continue
    return out


def cpu_seconds_path(path: Path) -> float:
    text = path.read_text()
    fields = text[text.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / _TICK
