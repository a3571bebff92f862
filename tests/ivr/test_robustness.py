"""What a misbehaving or vanishing Asterisk does to the engine: never a hang, never
a lost CDR, and other calls go on. Raw sockets, so every byte is ours to choose."""

from __future__ import annotations

import asyncio

import pytest

from ivr.clock import SystemClock

from .conftest import ACCESS, CALLER, Harness


def env_block(uniqueid: str = "1795438347.1", caller: str = CALLER, extension: str = ACCESS) -> bytes:
    return (f"agi_network: yes\nagi_network_script: prepaid\nagi_request: agi://127.0.0.1:4573/prepaid\n"
            f"agi_channel: Local/{extension}@prepaid-in-00000001;2\nagi_language: en\nagi_type: Local\n"
            f"agi_uniqueid: {uniqueid}\nagi_version: 22.10.1\nagi_callerid: {caller}\n"
            f"agi_calleridname: unknown\nagi_callingpres: 0\nagi_extension: {extension}\n"
            f"agi_accountcode: \n\n").encode()


async def connect(h: Harness) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    assert h.engine.server is not None
    return await asyncio.open_connection("127.0.0.1", h.engine.server.port)


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.read(), 10)


async def wait_for_cdr(h: Harness, uniqueid: str) -> object:
    for _ in range(200):
        for cdr in await h.store.cdrs():
            if cdr.uniqueid == uniqueid:
                return cdr
        await asyncio.sleep(0.02)
    raise AssertionError(f"no CDR for {uniqueid}")


async def test_close_right_after_the_headers_still_leaves_a_cdr(h: Harness) -> None:
    reader, writer = await connect(h)
    writer.write(env_block("u.d2"))
    await writer.drain()
    writer.close()
    cdr = await wait_for_cdr(h, "u.d2")
    assert cdr.outcome == "ABANDONED"  # type: ignore[attr-defined]
    assert cdr.hangup_side == "network"  # type: ignore[attr-defined]


async def test_asterisk_closes_mid_command(h: Harness) -> None:
    card, pin = await h.card()
    reader, writer = await connect(h)
    writer.write(env_block("u.d4"))
    assert await reader.readline() == b"ANSWER\n"
    writer.write(b"200 result=0\n")
    await reader.readline()  # SET VARIABLE CHANNEL(language)
    writer.write(b"200 result=1\n")
    assert (await reader.readline()).startswith(b'GET DATA "ivr/enter-pin"')
    writer.write(b"200 res")  # half a reply, then gone
    writer.close()
    cdr = await wait_for_cdr(h, "u.d4")
    assert (cdr.outcome, cdr.hangup_side) == ("ABANDONED", "network")  # type: ignore[attr-defined]


@pytest.mark.parametrize("garbage", [b"this is not agi\n", b"\x00\xff\xfe\n\n", b"agi_x: " + b"a" * 10000])
async def test_malformed_headers_are_dropped_and_others_keep_being_served(h: Harness, garbage: bytes) -> None:
    reader, writer = await connect(h)
    writer.write(garbage)
    await writer.drain()
    assert await read_until_closed(reader) == b""  # the engine closed it, sent nothing
    writer.close()
    assert h.engine.metrics.registry.get_sample_value(
        "ivr_agi_protocol_errors_total", {"side": "remote"}) >= 1
    card, pin = await h.card()
    rec = await h.call(digits=[pin + "#"], dials=[dict(talk_ms=2000)])
    assert (await h.cdrs())[-1].outcome == "ANSWERED"
    assert not rec.violations


async def test_garbage_reply_mid_call_ends_that_call_only(h: Harness) -> None:
    card, pin = await h.card()
    await h.store.bind(project_id=h.project.id, caller=CALLER, card_id=card.id,
                       now_ms=SystemClock().now_ms(), source="operator", max_bound=3)
    reader, writer = await connect(h)
    writer.write(env_block("u.garbage"))
    assert await reader.readline() == b"ANSWER\n"
    other = asyncio.create_task(h.call(caller_id="+41790000009", digits=[""] * 3))
    writer.write(b"BANANA 42\n")
    assert await read_until_closed(reader) == b""
    writer.close()
    cdr = await wait_for_cdr(h, "u.garbage")
    assert cdr.outcome == "ABANDONED"  # type: ignore[attr-defined]
    # the reservation was not even made; nothing held
    c = await h.store.card(card.id)
    assert (c.reserved_s, c.active_calls, c.balance_s) == (0, 0, 600)
    await other
    assert any(x.outcome == "PIN_FAILED" for x in await h.cdrs())


async def test_hangup_line_during_dial_is_not_taken_for_the_dial_reply(h: Harness) -> None:
    card, pin = await h.card()
    await h.store.bind(project_id=h.project.id, caller=CALLER, card_id=card.id,
                       now_ms=SystemClock().now_ms(), source="operator", max_bound=3)
    reader, writer = await connect(h)
    writer.write(env_block("u.c3"))
    replies = {b"ANSWER": b"200 result=0\n", b"SET": b"200 result=1\n", b"EXEC": b"200 result=0\n"}
    while True:
        line = await reader.readline()
        if line.startswith(b'EXEC "Dial"'):
            break
        writer.write(replies[line.split(b" ")[0].strip()])
    # c3: the caller hangs up during the Dial: -1, then a bare HANGUP
    writer.write(b"200 result=-1\nHANGUP\n")
    line = await reader.readline()
    assert line.startswith(b'GET FULL VARIABLE')
    # No end stamp (an older dialplan): 12.502 s since the IVR answer, of which 3.5 s
    # before the callee answered: 9.002 s talk
    writer.write(b"200 result=1 (ANSWER,12502,1795438350.500,,1795438347.000000,16,r1 Local/100@x/n)\n")
    rest = b""
    while line := await reader.readline():  # settled: IVR_HOLD cleared (works on a dead channel, e1-e3)
        rest += line
        writer.write(b"200 result=1\n")
    writer.close()
    assert rest == b'SET VARIABLE "IVR_HOLD" ""\n'
    assert b"HANGUP" not in rest  # the channel is already dead: no hangup command needed
    cdr = await wait_for_cdr(h, "u.c3")
    assert (cdr.outcome, cdr.talk_s, cdr.debited_s, cdr.hangup_side) == (  # type: ignore[attr-defined]
        "ANSWERED", 10, 10, "caller")
    assert (await h.store.card(card.id)).balance_s == 590


async def test_silent_peer_is_dropped_after_the_environment_timeout(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from ivr.app import Engine
    from ivr.metrics import Metrics
    from ivr.settings import Settings

    engine = await Engine.create(Settings(database=str(tmp_path / "db.sqlite3"), port=0, metrics_port=0,
                                          env_timeout_s=0.2), metrics=Metrics())
    server = await engine.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"agi_network: yes\n")  # and then nothing
        assert await read_until_closed(reader) == b""
        writer.close()
    finally:
        await engine.stop(grace_s=1)


async def test_a_block_added_by_another_process_applies_within_the_refresh_time(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import sys
    from dataclasses import replace
    from pathlib import Path

    from .conftest import make_harness

    h = await make_harness(tmp_path)
    try:
        h.engine.settings = replace(h.engine.settings, config_refresh_s=0.5)
        card, pin = await h.card()
        await h.call(digits=[pin + "#"], dials=[dict(talk_ms=1000)])  # snapshot taken
        ivr = str(Path(sys.executable).with_name("ivr"))
        proc = await asyncio.create_subprocess_exec(
            ivr, "--database", h.engine.settings.database, "blacklist", "add", CALLER, "--project", "test1",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        assert await proc.wait() == 0
        await asyncio.sleep(0.6)  # past the refresh time: the engine must see the other process's change
        await h.call(dials=[dict(talk_ms=1000)])
        assert (await h.cdrs())[-1].outcome == "BLOCKED_CALLER"
    finally:
        await h.engine.stop(grace_s=1)
