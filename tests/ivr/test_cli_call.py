"""``ivr call`` against a real engine, as a user would run it."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from .conftest import ACCESS, CALLER, Harness

IVR = str(Path(sys.executable).with_name("ivr"))


async def ivr(h: Harness, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        IVR, "--database", h.engine.settings.database, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_simulated_first_call_then_bound_call(h: Harness) -> None:
    card, pin = await h.card(minutes=10)
    port = str(h.engine.server.port) if h.engine.server else ""
    code, out, err = await ivr(h, "call", "--port", port, "--from", CALLER, "--to", ACCESS,
                               "--digits", pin + "#", "--talk", "65", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert (data["outcome"], data["card"], data["debited_s"], data["remaining_s"]) == (
        "ANSWERED", str(card.id), 65, 535)
    assert data["digits_sent"] == [pin + "#"]
    assert any("EXEC \"Dial\"" in line for line in data["transcript"])

    code, out, err = await ivr(h, "call", "--port", port, "--from", CALLER, "--to", ACCESS, "--busy")
    assert code == 0, err
    assert "outcome:   BUSY" in out and "debited:   0 s" in out and "remaining: 0:08:55" in out
    assert "GET DATA" not in out  # bound now: no PIN


async def test_no_engine_is_one_line_and_exit_1(h: Harness) -> None:
    code, out, err = await ivr(h, "call", "--port", "1", "--from", CALLER, "--to", ACCESS)
    assert code == 1
    assert err.strip().splitlines() == [err.strip()] and err.startswith("CliError: cannot reach the engine")


async def test_bad_digits_are_a_usage_error(h: Harness) -> None:
    code, out, err = await ivr(h, "call", "--from", CALLER, "--to", ACCESS, "--digits", "12ab")
    assert code == 2 and "only 0-9, * and #" in err
