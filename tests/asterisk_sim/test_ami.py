"""The fake AMI must answer as the recorded Asterisk 22.10.1 did (transcripts e4, e5),
and an AMI Hangup must act on the fake's running Dial as it did on the real one.

Each replay runs the fake call against a small FastAGI server that sends the
transcript's ``<<`` commands at the recorded times (scaled), and an AMI client that
sends the recorded ``## AMI >>`` actions at theirs; both compare what they read with
the transcript line by line. Two readings of the clock at the moment of the cut
(``ANSWEREDTIME_MS``, ``DIALEDTIME_MS``) depend on when the action arrives in real time
and are compared within ``CUT_TOLERANCE_MS``; everything else is exact. Asterisk lists
``CoreShowChannel`` events in its channel container's hash order, which the fake does
not model: the events are compared as a set, each event's lines in order.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from asterisk_sim import AMI_BANNER, AmiServer, CallRecord, CallScript, DialScript, place_call

from .transcripts import TRANSCRIPT_DIR

pytestmark = pytest.mark.skipif(not TRANSCRIPT_DIR.is_dir(), reason=f"transcripts not found in {TRANSCRIPT_DIR}")

SCALE = 1.0             # real seconds per recorded second (real time: the cut is a clock reading)
CUT_TOLERANCE_MS = 300  # recorded ms; the cut's moment follows the real arrival of the action (loaded machines)
IO_TIMEOUT = 10.0
SOUNDS = {"beep": 3404}

_LINE = re.compile(r"^\s*(\d+(?:\.\d+)?) (>>|<<|##|--) ?(.*)$")


@dataclass(frozen=True)
class ELine:
    ms: float
    kind: str   # "agi>" Asterisk->server, "agi<" server->Asterisk, "ami>" action, "ami<" AMI answer, "note"
    text: str


def parse_e(name: str) -> list[ELine]:
    """The e layout: ``<ms> >> text`` (Asterisk -> server), ``<ms> << text``,
    ``<ms> ## AMI >> Action: … | ActionID: …`` (the harness's action) and
    ``<ms> ## AMI << line`` (Asterisk's AMI answer). Only the first session (the
    e transcripts hold a second one below for e1-e3; e4 and e5 have none)."""
    lines: list[ELine] = []
    for raw in (TRANSCRIPT_DIR / f"{name}.txt").read_text(encoding="utf-8").split("\n"):
        if raw.startswith("#") or not raw.strip():
            continue
        m = _LINE.match(raw)
        assert m, raw
        ms, direction, text = float(m.group(1)), m.group(2), m.group(3)
        if direction == "##" and text.startswith("AMI >> "):
            lines.append(ELine(ms, "ami>", text[len("AMI >> "):]))
        elif direction == "##" and text.startswith("AMI <<"):
            lines.append(ELine(ms, "ami<", text[len("AMI << "):]))
        elif direction == ">>":
            lines.append(ELine(ms, "agi>", text))
        elif direction == "<<":
            lines.append(ELine(ms, "agi<", text))
        else:
            lines.append(ELine(ms, "note", text))
    return lines


def env_of(lines: list[ELine]) -> dict[str, str]:
    env = {}
    for line in lines:
        if line.kind != "agi>":
            continue
        if line.text == "":
            break
        key, _, value = line.text.partition(": ")
        env[key] = value
    return env


def ami_blocks(lines: list[ELine]) -> list[list[str]]:
    """The recorded AMI answers, one list of lines per message."""
    blocks: list[list[str]] = []
    current: list[str] = []
    for line in lines:
        if line.kind == "ami<":
            if line.text.startswith(("Response: ", "Event: ")) and current:
                blocks.append(current)  # e4 recorded CoreShowChannelsComplete without its end
                current = []
            if line.text == "":
                blocks.append(current)
                current = []
            else:
                current.append(line.text)
    if current:
        blocks.append(current)
    return blocks


class AmiReader:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def message(self) -> list[str]:
        lines = []
        while True:
            raw = await asyncio.wait_for(self.reader.readline(), IO_TIMEOUT)
            assert raw.endswith(b"\r\n"), raw
            line = raw[:-2].decode()
            if not line:
                return lines
            lines.append(line)

    async def aclose(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass

    def send(self, headers: str) -> None:
        text = "".join(f"{h.strip()}\r\n" for h in headers.split(" | ")) + "\r\n"
        self.writer.write(text.encode())


async def login(ami: AmiServer) -> AmiReader:
    reader, writer = await asyncio.open_connection("127.0.0.1", ami.port)
    banner = await reader.readline()
    assert banner == f"{AMI_BANNER}\r\n".encode()
    client = AmiReader(reader, writer)
    client.send("Action: Login | ActionID: l | Username: ivr-engine | Secret: secret | Events: off")
    assert await client.message() == ["Response: Success", "ActionID: l", "Message: Authentication accepted"]
    booted = await client.message()
    assert booted[0] == "Event: FullyBooted" and booted[-1] == "Status: Fully Booted"
    return client


_CUT_NUMBERS = re.compile(r"^(200 result=1 \(,,ANSWER,)(\d+),(\d+)(,.*)$")


def same_agi_line(expected: str, actual: str) -> bool:
    m, n = _CUT_NUMBERS.match(expected), _CUT_NUMBERS.match(actual)
    if m and n:
        return (m.group(1), m.group(4)) == (n.group(1), n.group(4)) and all(
            abs(int(m.group(i)) - int(n.group(i))) <= CUT_TOLERANCE_MS for i in (2, 3))
    return expected == actual


async def replay(name: str, script: CallScript, ami: AmiServer) -> tuple[CallRecord, list[list[str]], list[str]]:
    """Replay transcript ``name``; returns the fake's record, the AMI messages read, the AGI lines read."""
    lines = parse_e(name)
    body_start = next(i for i, line in enumerate(lines) if line.kind == "agi>" and line.text == "") + 1
    body = lines[body_start:]
    agi_expected = [line.text for line in body if line.kind == "agi>"]
    agi_read: list[str] = []
    ami_read: list[list[str]] = []
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while (await asyncio.wait_for(reader.readline(), IO_TIMEOUT)) != b"\n":
                pass
            client = await login(ami)
            loop = asyncio.get_running_loop()
            t0 = loop.time() - body[0].ms / 1000 * SCALE
            pending_ami: list[asyncio.Task[None]] = []

            async def read_ami(count: int, after: asyncio.Task[None] | None) -> None:
                if after is not None:
                    await after
                for _ in range(count):
                    ami_read.append(await client.message())

            for line in body:
                if line.kind in ("agi<", "ami>"):
                    await asyncio.sleep(max(0.0, t0 + line.ms / 1000 * SCALE - loop.time()))
                if line.kind == "agi<":
                    writer.write(f"{line.text}\n".encode())
                    await writer.drain()
                elif line.kind == "agi>":
                    raw = await asyncio.wait_for(reader.readline(), IO_TIMEOUT)
                    agi_read.append(raw.decode().removesuffix("\n"))
                elif line.kind == "ami>":
                    client.send(line.text)
                    action = line.text.split(" | ")[0].split(": ")[1]
                    expected = {"CoreShowChannels": 2 + sum(1 for b in ami_blocks(lines)
                                                            if b[0] == "Event: CoreShowChannel")}
                    previous = pending_ami[-1] if pending_ami else None
                    pending_ami.append(asyncio.create_task(read_ami(expected.get(action, 1), previous)))
            await asyncio.gather(*pending_ami)
            await client.aclose()
            writer.close()
            done.set_result(None)
        except Exception as exc:  # noqa: BLE001 - handed to the test
            done.set_exception(exc)
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        record = await asyncio.wait_for(place_call("127.0.0.1", port, script, ami=ami), 4 * IO_TIMEOUT)
        await asyncio.wait_for(done, IO_TIMEOUT)
    finally:
        server.close()
        await server.wait_closed()
    assert len(agi_read) == len(agi_expected)
    for expected, actual in zip(agi_expected, agi_read, strict=True):
        assert same_agi_line(expected, actual), (expected, actual)
    return record, ami_read, agi_read


def script_for(name: str, **extra: Any) -> CallScript:
    env = env_of(parse_e(name))
    return CallScript(
        caller_id=env["agi_callerid"], extension=env["agi_extension"], network_script=env["agi_network_script"],
        channel=env["agi_channel"], uniqueid=env["agi_uniqueid"], request=env["agi_request"],
        threadid=int(env["agi_threadid"]), time_scale=SCALE, idle_timeout_s=IO_TIMEOUT, sounds=SOUNDS, **extra)


def harness_channels(name: str, script: CallScript) -> list[dict[str, str]]:
    """The recorded CoreShowChannel events of channels outside the fake's call (the
    harness's caller-sim legs and its Local channel into [prepaid-in])."""
    own = {script.channel, "Local/15550001111@service-0000000b;1", "Local/15550001111@service-0000000b;2"}
    channels = []
    for block in ami_blocks(parse_e(name)):
        if block[0] != "Event: CoreShowChannel":
            continue
        fields = dict(line.split(": ", 1) if ": " in line else (line.rstrip(":"), "") for line in block[2:])
        if fields["Channel"] not in own:
            channels.append(fields)
    return channels


async def test_e4_core_show_channels_then_hangup_of_the_agi_channel() -> None:
    script = script_for(
        "e4_ami_hangup_of_ivr_channel", setup_ms=2, start_epoch=Decimal("1796193875.665235"),
        linkedid="hc1796193875662-0", connected_num="s",
        dials=[DialScript(ring_ms=1, talk_ms=20_000, bridge_id="a2041238-cfb5-4152-914a-762614a4015f",
                          callee_app=("Wait", "20"), callee_priority=6)])
    async with AmiServer() as ami:
        ami.extra_channels = harness_channels("e4_ami_hangup_of_ivr_channel", script)
        record, ami_read, agi_read = await replay("e4_ami_hangup_of_ivr_channel", script, ami)
    recorded = ami_blocks(parse_e("e4_ami_hangup_of_ivr_channel"))
    # CoreShowChannels: the answer, the events (as a set), the closing event, then the Hangup's answer.
    assert ami_read[0] == recorded[0]
    events = len(recorded) - 3
    def without_duration(blocks: list[list[str]]) -> list[tuple[str, ...]]:
        return sorted(tuple(line for line in b if not line.startswith("Duration: ")) for b in blocks)

    assert without_duration(ami_read[1:1 + events]) == without_duration(recorded[1:1 + events])
    # Duration is a reading of the clock (whole seconds of the channel's age): ±1 s.
    for block in ami_read[1:1 + events]:
        [duration] = [line for line in block if line.startswith("Duration: ")]
        assert duration in ("Duration: 00:00:02", "Duration: 00:00:03", "Duration: 00:00:04"), block
    # manager.c ends the list with ListItems, which the recording of e4 cut off.
    assert ami_read[1 + events] == [*recorded[1 + events], "ListItems: 6"]
    assert ami_read[2 + events] == recorded[2 + events] == ["Response: Success", "ActionID: e4cut",
                                                           "Message: Channel Hungup"]
    assert agi_read[1:3] == ["200 result=-1", "HANGUP"]
    assert record.hung_up_by == "ami"
    assert record.dials[0]["ended_by"] == "ami" and record.dials[0]["status"] == "ANSWER"
    assert record.violations == []


async def test_e5_regex_hangup_of_the_callee_keeps_the_caller() -> None:
    script = script_for("e5_ami_hangup_of_callee", setup_ms=1, start_epoch=Decimal("1796193883.707720"),
                        dials=[DialScript(ring_ms=2, talk_ms=20_000)])
    async with AmiServer() as ami:
        record, ami_read, agi_read = await replay("e5_ami_hangup_of_callee", script, ami)
        # What follows the recorded lines (manager.c): one ChannelHungup per channel, then the end.
    assert ami_read == ami_blocks(parse_e("e5_ami_hangup_of_callee"))
    assert agi_read[1] == "200 result=0"          # g: the caller is still there
    assert "beep" in record.prompts_played        # and hears a prompt after the cut
    assert record.hung_up_by == "server"
    assert record.dials[0]["ended_by"] == "ami"
    assert record.violations == []


async def test_regex_hangup_lists_the_channels_it_hung_up() -> None:
    async with AmiServer() as ami:
        call = asyncio.create_task(place_call_that_dials(ami))
        client = await login(ami)
        await wait_for_channels(ami, 3)
        client.send(r"Action: Hangup | ActionID: cut | Channel: /^Local\/100@svc-.*;1$/ | Cause: 16")
        assert await client.message() == ["Response: Success", "ActionID: cut", "EventList: start",
                                          "Message: Channels hung up will follow"]
        hung = await client.message()
        assert hung[0] == "Event: ChannelHungup" and hung[1].startswith("Channel: Local/100@svc-")
        assert await client.message() == ["Event: ChannelsHungupListComplete", "ActionID: cut",
                                          "EventList: Complete", "ListItems: 1"]
        record = await asyncio.wait_for(call, IO_TIMEOUT)
        await client.aclose()
    assert record.dials[0]["ended_by"] == "ami"


async def test_hangup_of_a_missing_channel_and_wrong_secret() -> None:
    async with AmiServer() as ami:
        client = await login(ami)
        client.send("Action: Hangup | ActionID: x | Channel: PJSIP/nobody-00000001")
        assert await client.message() == ["Response: Error", "ActionID: x", "Message: No such channel"]
        reader, writer = await asyncio.open_connection("127.0.0.1", ami.port)
        await reader.readline()
        writer.write(b"Action: Login\r\nActionID: l\r\nUsername: ivr-engine\r\nSecret: wrong\r\n\r\n")
        assert await reader.readuntil(b"\r\n\r\n") == (
            b"Response: Error\r\nActionID: l\r\nMessage: Authentication failed\r\n\r\n")
        assert await asyncio.wait_for(reader.read(), IO_TIMEOUT) == b""   # the session ends
        writer.close()
        await client.aclose()


async def test_astdb_actions() -> None:
    async with AmiServer() as ami:
        client = await login(ami)
        client.send("Action: DBPut | ActionID: p | Family: ivr-unsettled | Key: 42 | Val: a=1")
        assert await client.message() == ["Response: Success", "ActionID: p",
                                          "Message: Updated database successfully"]
        client.send("Action: DBGetTree | ActionID: t | Family: ivr-unsettled")
        assert await client.message() == ["Response: Success", "ActionID: t", "EventList: start",
                                          "Message: Result will follow"]
        assert await client.message() == ["Event: DBGetTreeResponse", "Key: /ivr-unsettled/42", "Val: a=1",
                                          "ActionID: t"]
        assert await client.message() == ["Event: DBGetTreeComplete", "ActionID: t", "EventList: Complete",
                                          "ListItems: 1"]
        client.send("Action: DBDel | ActionID: d | Family: ivr-unsettled | Key: 42")
        assert await client.message() == ["Response: Success", "ActionID: d", "Message: Key deleted successfully"]
        client.send("Action: DBDel | ActionID: d2 | Family: ivr-unsettled | Key: 42")
        assert await client.message() == ["Response: Error", "ActionID: d2",
                                          "Message: Database entry could not be deleted"]
        client.send("Action: Ping | ActionID: ping")
        pong = await client.message()
        assert pong[:3] == ["Response: Success", "ActionID: ping", "Ping: Pong"] and pong[3].startswith("Timestamp: ")
        assert ami.astdb == {}
        await client.aclose()


async def place_call_that_dials(ami: AmiServer) -> CallRecord:
    """A call whose server answers and dials a 20 s callee, in real time."""
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (await reader.readline()) != b"\n":
            pass
        for command in ("ANSWER", 'EXEC Dial "Local/100@svc/n,30,gL(60000)"', "HANGUP"):
            writer.write(f"{command}\n".encode())
            await reader.readline()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        return await place_call("127.0.0.1", port, CallScript(time_scale=1.0, answer_ms=0,
                                                              dials=[DialScript(ring_ms=0, talk_ms=20_000)]),
                                ami=ami)
    finally:
        server.close()


async def wait_for_channels(ami: AmiServer, count: int) -> None:
    for _ in range(200):
        if len(ami.channels()) >= count and any(c["BridgeId"] for c in ami.channels()):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(ami.channels())
