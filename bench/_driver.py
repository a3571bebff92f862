"""The load: a light Asterisk peer on many sockets, run as its own process.

``python -m bench._driver`` reads one job (JSON) on stdin, plays it against the
server at ``host:port`` and writes the result (JSON) on stdout. Each call is an
``asyncio.Protocol`` that sends the ``agi_*`` block, then answers every command
with the reply the fake Asterisk gave in the captured script (``_workload``),
after checking the command starts as the script says. The fake itself models
``res_agi.c`` byte by byte and costs far more CPU per call than a server; this
peer keeps the driver from being the bottleneck on a 2-core machine.

Measured on the peer side, as Asterisk would see it:

* command round trip: from the peer's last write (the ``agi_*`` block or a reply)
  to the arrival of the next command, i.e. how long the channel waits for the engine;
* call setup: from the start of the TCP connect to the arrival of ``EXEC Dial``
  (to the final ``HANGUP`` for a blocked caller); call: until the server closes.

Modes: ``closed`` (C calls in flight at all times until N calls were made),
``open`` (calls arrive at a fixed rate), ``paced`` (calls arrive at a fixed rate and
every reply is held back as long as Asterisk would take: ``PACE_S``, scaled) and
``hold`` (park P calls in Dial, then measure new calls arriving at a fixed rate,
then release the parked calls).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import _proc
from ._prepare import new_caller
from ._workload import PIN_MARK, Script

__all__ = ["run_job"]

_perf = time.perf_counter
_EPOCH = 1795438347
#: How long Asterisk takes to answer each command in the paced mode, seconds (the
#: transcripts: ANSWER waits ~0.5 s for media; prompts play for seconds; the PIN is
#: typed during GET DATA; Dial rings 2 s and talks 5 s, as the captured DIAL script).
#: Commands not listed (SET/GET VARIABLE, HANGUP) take ``PACE_OTHER_S``.
PACE_S: dict[str, float] = {"ANSWER": 0.5, 'EXEC "Playback"': 3.0, "GET DATA": 5.0, 'EXEC "Dial"': 7.0}
PACE_OTHER_S = 0.002


@dataclass
class Totals:
    """What a set of calls measured (times in microseconds)."""

    started: int = 0
    ok: int = 0
    failed: int = 0
    violations: list[str] = field(default_factory=list)
    violation_count: int = 0
    rtt_us: list[int] = field(default_factory=list)
    setup_us: list[int] = field(default_factory=list)
    call_us: list[int] = field(default_factory=list)
    rtt_by_command: dict[str, list[int]] = field(default_factory=dict)

    def violation(self, text: str) -> None:
        self.violation_count += 1
        if len(self.violations) < 20:
            self.violations.append(text)

    def to_json(self) -> dict[str, Any]:
        return {"started": self.started, "ok": self.ok, "failed": self.failed,
                "violations": self.violations, "violation_count": self.violation_count,
                "rtt_us": self.rtt_us, "setup_us": self.setup_us, "call_us": self.call_us,
                "rtt_by_command": self.rtt_by_command}


class _Compiled:
    """A script made ready for the wire: bytes, and the per-call parts of the env block."""

    def __init__(self, script: Script) -> None:
        self.scenario = script.scenario
        self.keys = [s.key.encode() for s in script.steps]
        self.replies = [s.reply.encode() for s in script.steps]
        self.has_pin = [PIN_MARK in s.reply for s in script.steps]
        self.dial = [s.dial for s in script.steps]
        self.setup_end = [s.setup_end for s in script.steps]
        self.names = [s.key for s in script.steps]
        self.env = list(script.env)
        self.delays: list[float] | None = None

    def paced(self, scale: float) -> _Compiled:
        """A copy whose replies wait as long as Asterisk would take, times ``scale``."""
        other = _Compiled.__new__(_Compiled)
        other.__dict__.update(self.__dict__)
        other.delays = [PACE_S.get(name, PACE_OTHER_S) * scale for name in self.names]
        return other

    def env_block(self, *, caller: str, seq: int, access: str) -> bytes:
        channel = f"Local/{access}@prepaid-in-{seq:08x};2"
        per_call = {"agi_callerid": caller, "agi_uniqueid": f"{_EPOCH}.{seq}", "agi_channel": channel}
        lines = [f"{k}: {per_call.get(k, v)}" for k, v in self.env]
        return ("\n".join(lines) + "\n\n").encode()


class _Gate:
    """Holds back the Dial replies of parked calls until ``release()``."""

    def __init__(self) -> None:
        self.parked: list[tuple[_Peer, bytes]] = []
        self.on_park: Callable[[], None] | None = None

    def park(self, peer: _Peer, reply: bytes) -> None:
        peer.parked = True
        self.parked.append((peer, reply))
        if self.on_park is not None:
            self.on_park()

    def release(self) -> int:
        parked, self.parked = self.parked, []
        for peer, reply in parked:
            peer.send(reply)
        return len(parked)


class _Peer(asyncio.Protocol):
    """One call, the Asterisk side."""

    def __init__(self, script: _Compiled, env: bytes, pin: bytes, totals: Totals, gate: _Gate | None,
                 per_command: bool, started: float, done: asyncio.Future[None]) -> None:
        self.script = script
        self.env = env
        self.pin = pin
        self.totals = totals
        self.gate = gate
        self.per_command = per_command
        self.started = started
        self.done = done
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.step = 0
        self.sent_at = 0.0
        self.rtts: list[int] = []
        self.setup_at: float | None = None
        self.error: str | None = None
        self.parked = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.env)
        self.sent_at = _perf()

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)
        self.sent_at = _perf()

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        while True:
            end = buffer.find(b"\n")
            if end < 0:
                break
            self._command(buffer[:end], _perf())
            buffer = buffer[end + 1:]
        self.buffer = buffer

    def _command(self, line: bytes, now: float) -> None:
        s = self.script
        i = self.step
        if i >= len(s.keys):
            return self._fail(f"{s.scenario}: command after the script's end: {line[:60]!r}")
        if not line.startswith(s.keys[i]):
            return self._fail(f"{s.scenario}: step {i}: expected {s.names[i]!r}, got {line[:60]!r}")
        rtt = int((now - self.sent_at) * 1e6)
        self.rtts.append(rtt)
        if self.per_command:
            self.totals.rtt_by_command.setdefault(s.names[i], []).append(rtt)
        if s.setup_end[i]:
            self.setup_at = now
        self.step = i + 1
        reply = s.replies[i]
        if s.has_pin[i]:
            reply = reply.replace(b"{pin}", self.pin)
        if s.dial[i] and self.gate is not None:
            self.gate.park(self, reply)
            return None
        if s.delays is not None:
            asyncio.get_running_loop().call_later(s.delays[i], self.send, reply)
            return None
        self.send(reply)
        return None

    def _fail(self, text: str) -> None:
        if self.error is None:
            self.error = text
        if self.transport is not None:
            self.transport.abort()

    def eof_received(self) -> bool:
        return False  # close our side too: the server ended the call

    def connection_lost(self, exc: Exception | None) -> None:
        if self.error is None and self.step < len(self.script.keys):
            self.error = (f"{self.script.scenario}: closed after {self.step} of"
                          f" {len(self.script.keys)} commands ({exc or 'EOF'})")
        if not self.done.done():
            self.done.set_result(None)


class Caller:
    """Places calls of one job, hands out callers, PINs and unique ids, and adds up."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.host: str = job["host"]
        self.port: int = job["port"]
        self.access: str = job["access"]
        self.scripts = {name: _Compiled(Script.from_json(data)) for name, data in job["scripts"].items()}
        self.timeout_s: float = job.get("timeout_s", 120.0)
        self.per_command: bool = job.get("per_command", False)
        if job["mode"] == "paced":
            scale = float(job.get("pace_scale", 1.0))
            self.scripts = {name: script.paced(scale) for name, script in self.scripts.items()}
        self.seq = itertools.count(job["uniqueid_base"])
        self.new_callers = itertools.count(job.get("new_caller_base", 0))

    async def call(self, scenario: str, caller: str, totals: Totals, *, pin: str = "",
                   gate: _Gate | None = None, on_end: Callable[[_Peer | None], None] | None = None) -> None:
        loop = asyncio.get_running_loop()
        script = self.scripts[scenario]
        env = script.env_block(caller=caller, seq=next(self.seq), access=self.access)
        done: asyncio.Future[None] = loop.create_future()
        started = _perf()
        totals.started += 1
        peer = _Peer(script, env, pin.encode(), totals, gate, self.per_command, started, done)
        try:
            transport, _ = await loop.create_connection(lambda: peer, self.host, self.port)
        except OSError as exc:
            totals.failed += 1
            totals.violation(f"connect: {exc}")
            if on_end is not None:
                on_end(None)
            return
        try:
            await asyncio.wait_for(asyncio.shield(done), self.timeout_s)
        except TimeoutError:
            peer.error = peer.error or f"{scenario}: no end within {self.timeout_s} s (step {peer.step})"
            transport.abort()
        ended = _perf()
        if on_end is not None:
            on_end(peer)
        if peer.error is not None:
            totals.failed += 1
            totals.violation(peer.error)
            return
        totals.ok += 1
        totals.rtt_us.extend(peer.rtts)
        totals.setup_us.append(int(((peer.setup_at or ended) - started) * 1e6))
        totals.call_us.append(int((ended - started) * 1e6))

    def caller_for(self, scenario: str, job: dict[str, Any], slot: int, k: int) -> tuple[str, str]:
        """(caller, PIN) for the k-th call of worker ``slot``. Bound callers: each worker
        has its own cards (a card takes one call at a time); first-time callers: a fresh
        number and the worker's own PIN card."""
        if scenario == "bound":
            callers: list[str] = job["callers"]
            width = job["concurrency"]
            mine = callers[slot::width]
            return mine[k % len(mine)], ""
        if scenario == "first_pin":
            return new_caller(next(self.new_callers)), job["pins"][slot]
        blocked: list[str] = job["blocked"]
        return blocked[(slot + k) % len(blocked)], ""


async def _closed(caller: Caller, job: dict[str, Any]) -> dict[str, Any]:
    scenario, width, calls = job["scenario"], job["concurrency"], job["calls"]
    if scenario == "bound" and len(job["callers"]) < width:
        raise ValueError(f"{width} concurrent bound calls need {width} bound cards, have {len(job['callers'])}")
    if scenario == "first_pin" and len(job["pins"]) < width:
        raise ValueError(f"{width} concurrent first calls need {width} PIN cards, have {len(job['pins'])}")
    totals = Totals()
    counter = itertools.count()

    async def worker(slot: int) -> None:
        k = 0
        while next(counter) < calls:
            number, pin = caller.caller_for(scenario, job, slot, k)
            await caller.call(scenario, number, totals, pin=pin)
            k += 1

    t0, c0 = _perf(), _proc.self_cpu_seconds()
    await asyncio.gather(*(worker(slot) for slot in range(min(width, calls))))
    return {**totals.to_json(), "wall_s": _perf() - t0, "driver_cpu_s": _proc.self_cpu_seconds() - c0}


async def _arrivals(caller: Caller, scenario: str, callers: list[str], rate: float, duration_s: float,
                    totals: Totals) -> float:
    """Calls at a fixed rate for ``duration_s``; returns when the last one ended."""
    loop = asyncio.get_running_loop()
    n = max(1, int(rate * duration_s))
    tasks = []
    start = loop.time()
    for k in range(n):
        delay = start + k / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(caller.call(scenario, callers[k % len(callers)], totals)))
    await asyncio.gather(*tasks)
    return loop.time() - start


async def _open(caller: Caller, job: dict[str, Any]) -> dict[str, Any]:
    totals = Totals()
    t0, c0 = _perf(), _proc.self_cpu_seconds()
    await _arrivals(caller, job["scenario"], job["callers"], job["rate"], job["duration_s"], totals)
    return {**totals.to_json(), "wall_s": _perf() - t0, "driver_cpu_s": _proc.self_cpu_seconds() - c0}


async def _paced(caller: Caller, job: dict[str, Any]) -> dict[str, Any]:
    """Calls at a fixed rate, each reply as late as Asterisk would send it; the server's
    CPU over the whole run (idle moments included), as under a real Asterisk."""
    pid: int = job["server_pid"]
    totals = Totals()
    scenario = job["scenario"]
    pins: list[str] = job["pins"]
    loop = asyncio.get_running_loop()
    n = max(1, int(job["rate"] * job["duration_s"]))
    callers: list[str] = job["callers"] if scenario == "bound" else job["blocked"]
    tasks = []
    t0, c0, cpu0 = _perf(), _proc.self_cpu_seconds(), _proc.cpu_seconds(pid)
    start = loop.time()
    for k in range(n):
        delay = start + k / job["rate"] - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if scenario == "first_pin":
            number, pin = new_caller(next(caller.new_callers)), pins[k % len(pins)]
        else:
            number, pin = callers[k % len(callers)], ""
        tasks.append(asyncio.create_task(caller.call(scenario, number, totals, pin=pin)))
    await asyncio.gather(*tasks)
    return {**totals.to_json(), "wall_s": _perf() - t0, "driver_cpu_s": _proc.self_cpu_seconds() - c0,
            "server_cpu_s": _proc.cpu_seconds(pid) - cpu0}


async def _hold(caller: Caller, job: dict[str, Any]) -> dict[str, Any]:
    """Park ``parked`` bound calls in Dial, then let new calls arrive, then release."""
    pid: int = job["server_pid"]
    parked_n: int = job["parked"]
    callers: list[str] = job["callers"]
    if len(callers) <= parked_n:
        raise ValueError(f"{parked_n} parked calls need more than {parked_n} bound cards")
    out: dict[str, Any] = {"rss_before": _proc.memory(pid)}
    gate = _Gate()
    all_parked = asyncio.Event()
    in_flight = asyncio.Semaphore(job.get("park_concurrency", 200))
    parked_totals = Totals()
    accounted = 0  # calls parked in Dial, or ended before it

    def account() -> None:
        nonlocal accounted
        in_flight.release()
        accounted += 1
        if accounted >= parked_n:
            all_parked.set()

    def on_end(peer: _Peer | None) -> None:
        if peer is None or not peer.parked:
            account()

    gate.on_park = account

    async def park(k: int) -> None:
        await in_flight.acquire()
        await caller.call("bound", callers[k], parked_totals, gate=gate, on_end=on_end)

    cpu0, t0 = _proc.cpu_seconds(pid), _perf()
    park_tasks = [asyncio.create_task(park(k)) for k in range(parked_n)]
    finished = asyncio.gather(*park_tasks)
    try:
        await asyncio.wait_for(all_parked.wait(), job.get("park_timeout_s", 300.0))
    except TimeoutError:
        pass
    out["parked"] = len(gate.parked)
    out["park_s"] = _perf() - t0
    out["park_cpu_s"] = _proc.cpu_seconds(pid) - cpu0
    await asyncio.sleep(1.0)
    out["rss_parked"] = _proc.memory(pid)
    out["fds_parked"] = _proc.open_fds(pid)
    cpu1 = _proc.cpu_seconds(pid)
    await asyncio.sleep(job.get("idle_s", 2.0))
    out["idle_cpu_per_s"] = (_proc.cpu_seconds(pid) - cpu1) / job.get("idle_s", 2.0)

    new_totals = Totals()
    cpu2, c2 = _proc.cpu_seconds(pid), _proc.self_cpu_seconds()
    wall = await _arrivals(caller, "bound", callers[parked_n:], job["rate"], job["duration_s"], new_totals)
    out["new_calls"] = {**new_totals.to_json(), "wall_s": wall, "engine_cpu_s": _proc.cpu_seconds(pid) - cpu2,
                        "driver_cpu_s": _proc.self_cpu_seconds() - c2}
    out["rss_after_new_calls"] = _proc.memory(pid)

    cpu3, t3 = _proc.cpu_seconds(pid), _perf()
    out["released"] = gate.release()
    await finished
    out["release_s"] = _perf() - t3
    out["release_cpu_s"] = _proc.cpu_seconds(pid) - cpu3
    out["parked_calls"] = {k: v for k, v in parked_totals.to_json().items() if not k.endswith("_us")}
    out["parked_calls"]["setup_us"] = parked_totals.setup_us
    out["rss_end"] = _proc.memory(pid)
    return out


async def run_job(job: dict[str, Any]) -> dict[str, Any]:
    caller = Caller(job)
    mode = job["mode"]
    if mode == "closed":
        return await _closed(caller, job)
    if mode == "open":
        return await _open(caller, job)
    if mode == "hold":
        return await _hold(caller, job)
    if mode == "paced":
        return await _paced(caller, job)
    raise ValueError(f"unknown mode {mode!r}")


def main() -> None:
    job = json.loads(sys.stdin.read())
    _proc.raise_fd_limit(job.get("fd_limit", 65536))
    result = asyncio.run(run_job(job))
    sys.stdout.write(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
