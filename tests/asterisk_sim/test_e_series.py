"""The dialplan's later FastAGI sessions against transcripts e1-e3 (Asterisk 22.10.1):
the engine dies during EXEC Dial, the Dial runs to its end, AGI() returns SUCCESS and the
dialplan opens a second session (e1); a pushed hangup handler opens one on the dead channel
(e2, and after a normal end, e3). The server side plays the transcripts' own commands; the
second session's agi_* block and its replies are compared with the recording (the random
parts — TCP ports, thread ids — come from the transcript; numbers from the clock are
compared by their shape only, as the replay of the b series does with tolerances)."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from decimal import Decimal

import pytest

from asterisk_sim import CallScript, Continuation, DialScript, place_call

from .transcripts import TRANSCRIPT_DIR

_LINE = re.compile(r"^\s*(\d+(?:\.\d+)?) (>>|<<|##|--) ?(.*)$")


@dataclass
class Session:
    env: list[str]
    exchanges: list[tuple[str, list[str]]]   # (command, replies)


def sessions(name: str) -> list[Session]:
    path = TRANSCRIPT_DIR / f"{name}.txt"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    out: list[Session] = []
    for part in path.read_text().split("# ---- second FastAGI session")[:2]:
        env: list[str] = []
        exchanges: list[tuple[str, list[str]]] = []
        in_env = True
        for raw in part.splitlines():
            m = _LINE.match(raw)
            if not m or m.group(2) in ("##", "--"):
                continue
            direction, text = m.group(2), m.group(3)
            if direction == ">>" and in_env:
                env.append(text)
                in_env = text != ""
            elif direction == "<<":
                exchanges.append((text, []))
            elif direction == ">>":
                exchanges[-1][1].append(text)
        out.append(Session(env, exchanges))
    return out


HARNESS = Continuation(after_agi=("e_settle", ("after-agi",)), after_agi_priority=6,
                       handlers={"ivr-settle-hh": ("e_settle", ("hangup-handler",), 1)})
SHAPE = re.compile(r"\d+\.\d+|\d{4,}")


def shape(text: str) -> str:
    return SHAPE.sub("N", text)


async def run(name: str, script: CallScript) -> tuple[list[list[str]], list[Session]]:
    recorded = sessions(name)
    seen: list[list[str]] = []
    index = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal index
        session = recorded[min(index, len(recorded) - 1)]
        index += 1
        got: list[str] = []
        while (line := (await reader.readline()).decode()) not in ("\n", ""):
            got.append(line.rstrip("\n"))
        got.append("")
        for command, replies in session.exchanges:
            writer.write(command.encode() + b"\n")
            await writer.drain()
            if command.startswith("EXEC Dial") and not replies:
                break   # the engine dies during the Dial
            for _ in replies:
                got.append((await reader.readline()).decode().rstrip("\n"))
        seen.append(got)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        await asyncio.wait_for(place_call("127.0.0.1", port, script), 30)
    finally:
        server.close()
        await server.wait_closed()
    return seen, recorded


def _script(first: Session, **kw: object) -> CallScript:
    env = dict(line.split(": ", 1) for line in first.env if ": " in line)
    return CallScript(channel=env["agi_channel"], uniqueid=env["agi_uniqueid"], threadid=int(env["agi_threadid"]),
                      request=env["agi_request"], network_script=env["agi_network_script"], idle_timeout_s=10,
                      start_epoch=Decimal(env["agi_uniqueid"].split(".")[0]) + Decimal("0.5"), stamp_end=False,
                      continuation=HARNESS, **kw)  # type: ignore[arg-type]


def _compare(seen: list[list[str]], recorded: list[Session]) -> None:
    assert len(seen) == 2
    second, expected = seen[1], recorded[1]
    n = len(expected.env)
    port_free = [re.sub(r"agi://127.0.0.1:\d+/", "agi://127.0.0.1:4573/", line) for line in second[:n]]
    assert port_free == expected.env
    replies = [r for _, rs in expected.exchanges for r in rs]
    assert [shape(r) for r in second[n:]] == [shape(r) for r in replies]


@pytest.mark.parametrize("name,dial,hangup_at_ms", [
    ("e1_engine_dies_mid_dial", DialScript(ring_ms=0, talk_ms=6000), None),
    ("e2_engine_dies_then_caller_hangs_up", DialScript(ring_ms=0, talk_ms=20_000), 7000),
    ("e3_hangup_handler_after_normal_end", DialScript(ring_ms=0, talk_ms=4000), None),
])
async def test_second_session_as_recorded(name: str, dial: DialScript, hangup_at_ms: int | None) -> None:
    first = sessions(name)[0]
    seen, recorded = await run(name, _script(first, dials=[dial], hangup_at_ms=hangup_at_ms))
    _compare(seen, recorded)
    # Fact 11: after AGI() returned (e1) CDR(answer,u) is the after-bridge CDR's, later than
    # the callee's answer stamp; in a hangup handler (e2, e3) it is still the IVR's answer.
    facts = seen[1][len(recorded[1].env)].split("(", 1)[1].rstrip(")").split(",")
    stamp, cdr_answer = Decimal(facts[5]), Decimal(facts[6])
    assert (cdr_answer > stamp) == name.startswith("e1")
