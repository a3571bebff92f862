"""The fake Asterisk must answer exactly as the recorded Asterisk 22.10.1 did.

Each transcript test starts a tiny raw asyncio server (not the engine) that
replays the transcript's ``<<`` commands over real TCP loopback to the fake,
configured with that call's scenario, and reads one line for every ``>>`` line
of the transcript, in transcript order: the replies must be equal word for
word, and an unprompted ``HANGUP`` must arrive where the transcript has it
(c4: before the server sends its next command).  Then the fake's own record
must agree: ``agi_*`` block, commands, replies, who closed, AGISTATUS.

Only values that are readings of Asterisk's microsecond clock are compared
with a tolerance (``approx``): ``CDR(billsec,f)`` / ``CDR(duration,f)`` (the
real channel setup adds ~2 ms the fake does not model) and b4k's final
``STRFTIME`` (the recording server's own think time).  Everything else,
``ANSWEREDTIME_MS``, ``endpos``, ``SHARED(IVR_ANSWERED)`` included, is exact.
"""

from __future__ import annotations

import ast
import asyncio
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asterisk_sim import CallRecord, CallScript, DialScript, parse_args, place_call
from asterisk_sim import _fastagi as fake_asterisk

from .transcripts import TRANSCRIPT_DIR, Transcript, load, parse_transcript

pytestmark = pytest.mark.skipif(
    not TRANSCRIPT_DIR.is_dir(), reason=f"transcripts not found in {TRANSCRIPT_DIR}"
)

# Lengths (8 kHz samples) of the Asterisk sounds the transcripts play, from their endpos.
SOUNDS = {
    "beep": 3404,  # b2
    "vm-goodbye": 6920,  # b2
    "tt-weasels": 23608,  # b2, b4h, b4k
    "demo-congrats": 7 * 8000,  # longer than the 2 s c1 plays of it (real length not recorded)
    "demo-thanks": 44000,  # "demo-thanks 5.5s" (b3)
}
MISSING = frozenset({"no_such_prompt", "nosuchfile_xyz"})
IO_TIMEOUT = 5.0  # real seconds a replay waits for one line before failing the test


@dataclass(frozen=True)
class Scenario:
    """How to replay one transcript against the fake."""

    name: str
    script: Mapping[str, Any] = field(default_factory=dict)  # CallScript overrides
    # Exchanges the fake deliberately does not model: the command and its replies are dropped.
    exclude: tuple[str, ...] = ()
    why_excluded: str = ""
    timed: bool = False  # the server waits the transcript's gaps x time_scale
    close_at_note: bool = False  # timed: close when the transcript's server closed (d4)
    partial_last: bool = False  # the last command is sent without its "\n" (d5)
    # The server closed right after its HANGUP's "200 result=1", before Asterisk's
    # HANGUP line (written ~40 ms later, Nagle) reached the recorder.
    hangup_after_close: bool = False
    unprocessed: tuple[str, ...] = ()  # commands Asterisk never read (it had closed)
    approx: Mapping[str, float] = field(default_factory=dict)  # command part -> tolerance (s)
    violations: tuple[str, ...] = ()  # one pattern per expected violation
    hung_up_by: str | None = None

    def __str__(self) -> str:
        return self.name


CDR_APPROX = {"CDR(billsec,f)": 0.003}

SCENARIOS = [
    Scenario("a1_headers", hung_up_by="server"),
    Scenario("a2_headers_withheld", hangup_after_close=True, hung_up_by="server"),
    Scenario("a3_headers_anonymous", hangup_after_close=True, hung_up_by="server"),
    Scenario("a4_headers_emptycid", hangup_after_close=True, hung_up_by="server"),
    Scenario("a5_headers_plus_e164", hangup_after_close=True, hung_up_by="server"),
    Scenario(
        "b1_misc",
        hung_up_by="server",
        violations=(
            r"unknown command: 'FOO BAR'",
            r"usage: 'GET DATA'",
            r"usage: 'SAY NUMBER'",
            r"usage: 'WAIT FOR DIGIT'",
        ),
    ),
    Scenario(
        "b2_stream_file",
        script={"digits": ["", "2"]},  # GET OPTION: nothing, then '2' after the prompt
        exclude=(
            'STREAM FILE demo-congrats "0123456789*#"',
            'STREAM FILE tt-weasels "#" 16000',
            'CONTROL STREAM FILE tt-weasels "#"',
            'CONTROL STREAM FILE demo-congrats "1" 3000 # * 0',
            "GET VARIABLE CPLAYBACKSTATUS",
            "GET VARIABLE CPLAYBACKOFFSET",
            "GET VARIABLE CPLAYBACKSTOPKEY",
        ),
        why_excluded="DTMF that interrupts STREAM FILE and CONTROL STREAM FILE are not modelled",
        hung_up_by="server",
    ),
    Scenario(
        "b3_get_data",
        script={"digits": ["1234", "", "12#", "12", "#", "*9", "98", "55#", "9", "", "#"]},
        hung_up_by="server",
    ),
    Scenario("b3d_get_data_dial_D", script={"digits": ["1234#", "56#"]}, hung_up_by="server"),
    Scenario(
        "b4a_dial_answered",
        script={"setup_ms": 2, "dials": [DialScript(ring_ms=0, talk_ms=5002)]},
        approx=CDR_APPROX,
        hung_up_by="server",
    ),
    Scenario(
        "b4b_dial_busy",
        script={"setup_ms": 2, "dials": [DialScript("busy", ring_ms=2)]},
        approx=CDR_APPROX,
        hung_up_by="server",
    ),
    Scenario(
        "b4c_dial_noanswer",
        script={"setup_ms": 2, "dials": [DialScript("noanswer")]},
        approx=CDR_APPROX,
        hung_up_by="server",
    ),
    Scenario(
        "b4d_dial_limit",
        script={"setup_ms": 1, "dials": [DialScript(ring_ms=2, talk_ms=20_000)]},
        approx=CDR_APPROX,
        hung_up_by="server",
    ),
    Scenario(
        "b4e_dial_congestion",
        script={"setup_ms": 2, "dials": [DialScript("congestion", ring_ms=1)]},
        approx=CDR_APPROX,
        hung_up_by="server",
    ),
    Scenario(
        "b4f_dial_limit_warning",
        # "you have N seconds" = vm-youhave + digits/N + queue-seconds, 977 ms each
        script={"setup_ms": 2, "prompt_ms": 977, "dials": [DialScript(ring_ms=1, talk_ms=20_000)]},
        approx=CDR_APPROX,
        hung_up_by="server",
    ),
    Scenario(
        "b4g_dial_pipe_syntax",
        script={"dials": [DialScript(ring_ms=2, talk_ms=10_000)] * 2},
        hung_up_by="server",
    ),
    Scenario(
        "b4h_dial_limit_after_prompt",
        script={"setup_ms": 2, "dials": [DialScript(ring_ms=1, talk_ms=20_000)]},
        approx=CDR_APPROX,
        hung_up_by="server",
    ),
    Scenario(
        "b4i_dial_answered_g",
        script={"setup_ms": 2, "dials": [DialScript(ring_ms=2, talk_ms=5001)]},
        approx=CDR_APPROX,
        hung_up_by="server",
    ),
    Scenario(
        "b4j_dial_invalid",
        script={"dials": [DialScript("chanunavail")] * 3},
        hung_up_by="server",
    ),
    Scenario(
        "b4k_dial_talk_stamp",
        script={
            "channel": "Local/8005550100@prepaid-in-00000003;2",
            "start_epoch": Decimal("1795438882.011870"),  # = CDR(answer,u): ANSWER at 0
            "dials": [DialScript(ring_ms=2002, talk_ms=4001)],  # SVC_RING=2, SVC_HOLD=4
        },
        approx={"STRFTIME": 0.010},
        hangup_after_close=True,
        hung_up_by="server",
    ),
    Scenario(
        "b5_command_while_busy",
        script={"time_scale": 0.02},
        timed=True,
        hung_up_by="server",
        violations=(
            r"while 'GET DATA beep 10000 4' was running: Asterisk aborted it without a reply",
            r'while \'STREAM FILE demo-congrats "#"\' was running: Asterisk aborted it',
            r"2 command lines arrived at once",
        ),
    ),
    Scenario("c1_hangup_in_stream", hung_up_by="caller"),
    Scenario("c1_hangup_in_stream_agisighup", hung_up_by="caller"),
    Scenario(
        "c1_hangup_in_stream_agiexitonhangup",
        unprocessed=("GET VARIABLE DIALSTATUS",),
        hung_up_by="caller",
    ),
    Scenario("c2_hangup_in_getdata", hung_up_by="caller"),
    Scenario("c2_hangup_in_getdata_agisighup", hung_up_by="caller"),
    Scenario(
        "c2_hangup_in_getdata_agiexitonhangup",
        unprocessed=("GET VARIABLE DIALSTATUS",),
        hung_up_by="caller",
    ),
    Scenario(
        "c3_hangup_in_dial",
        script={"dials": [DialScript(ring_ms=2, talk_ms=20_000)]},
        hung_up_by="caller",
    ),
    Scenario(
        "c3_hangup_in_dial_agisighup",
        script={"dials": [DialScript(ring_ms=2, talk_ms=20_000)]},
        hung_up_by="caller",
    ),
    Scenario(
        "c3_hangup_in_dial_agiexitonhangup",
        script={"dials": [DialScript(ring_ms=2, talk_ms=20_000)]},
        unprocessed=("GET VARIABLE DIALSTATUS", "GET VARIABLE ANSWEREDTIME"),
        hung_up_by="caller",
    ),
    # The server's think time is virtual 0: a hang-up "while idle" is one due when
    # a command ends (ANSWER ends at 500 ms).  The timed variants below use the real gap.
    Scenario("c4_hangup_while_idle", script={"hangup_at_ms": 500}, hung_up_by="caller"),
    Scenario("c4_hangup_while_idle_agisighup", script={"hangup_at_ms": 500}, hung_up_by="caller"),
    Scenario("c5_hangup_before_answer", script={"hangup_at_ms": 0}, hung_up_by="caller"),
    Scenario("c6_hangup_keepalive", hung_up_by="caller"),
    Scenario("d2_close_after_headers"),
    Scenario("d3_close_after_answer"),
    Scenario(
        "d4_close_mid_command",
        script={"time_scale": 0.02},
        timed=True,
        close_at_note=True,
        violations=(r"closed the connection while 'GET DATA beep 10000 4' was running",),
    ),
    Scenario(
        "d5_partial_line",
        partial_last=True,
        unprocessed=('VERBOSE "no newline" 1',),
        violations=(r"line without \\n at close",),
    ),
    Scenario("d6_hangup_then_close", hangup_after_close=True, hung_up_by="server"),
    Scenario("d7_after_agi_dialplan", hangup_after_close=True, hung_up_by="server"),
]

TIMED_VARIANTS = [
    # The caller's L(1500) fires while the server sleeps 3 s (c4), the caller gives up
    # ringing after 2 s while the server never answers (c5): with real (scaled) gaps.
    Scenario("c4_hangup_while_idle", script={"time_scale": 0.02}, timed=True, hung_up_by="caller"),
    Scenario(
        "c5_hangup_before_answer",
        script={"time_scale": 0.02, "hangup_at_ms": 2000},
        timed=True,
        hung_up_by="caller",
    ),
]

NOT_REPLAYED = {
    "c4_hangup_while_idle_agiexitonhangup": "no TCP session reached the recording server",
    "d1_connection_refused": "no TCP session (connection refused); see test_connection_refused",
    "e1_engine_dies_mid_dial": "two sessions per file: replayed by test_e_series.py",
    "e2_engine_dies_then_caller_hangs_up": "two sessions per file: replayed by test_e_series.py",
    "e3_hangup_handler_after_normal_end": "two sessions per file: replayed by test_e_series.py",
    "e4_ami_hangup_of_ivr_channel": "FastAGI and AMI together: replayed in test_ami.py",
    "e5_ami_hangup_of_callee": "FastAGI and AMI together: replayed in test_ami.py",
}


# --------------------------------------------------------------------------- replay


def script_for(t: Transcript, scenario: Scenario) -> CallScript:
    """The CallScript of a transcript's call: call.py's variables, Asterisk's random parts."""
    v = t.variables
    env = t.env
    kwargs: dict[str, Any] = {
        # INDEX fact 10: no number -> "unknown"; CALLERID(pres)=prohib -> 35.
        "caller_id": v.get("CALLER") or "unknown",
        "caller_name": v.get("CALLER_NAME") or "unknown",
        "callingpres": 35 if v.get("CALLER_PRES") == "prohib" else 0,
        "extension": v.get("TARGET", "8005550100"),
        "network_script": v.get("AGI_SCRIPT", "prepaid"),
        "args": tuple(v["AGI_ARGS"].split(",")) if "AGI_ARGS" in v else (),
        "agisighup": v.get("AGISIGHUP") != "no",
        "agiexitonhangup": v.get("AGIEXITONHANGUP") == "yes",
        # The caller's Dial L(ms) counts from the IVR's answer, which starts at ~0 ms.
        "hangup_at_ms": int(v["HANGUP_AFTER_MS"]) if "HANGUP_AFTER_MS" in v else None,
        "sounds": SOUNDS,
        "missing_sounds": MISSING,
        "idle_timeout_s": IO_TIMEOUT,
    }
    if env:
        kwargs["channel"] = env["agi_channel"]
        kwargs["uniqueid"] = env["agi_uniqueid"]
        kwargs["request"] = env["agi_request"]
        kwargs["threadid"] = int(env["agi_threadid"])
        # Mid-second, so that CDR(start) 'YYYY-MM-DD HH:MM:SS' is the uniqueid's second.
        kwargs["start_epoch"] = Decimal(env["agi_uniqueid"].split(".")[0]) + Decimal("0.5")
    kwargs.update(scenario.script)
    return CallScript(**kwargs)


def replay_lines(t: Transcript, scenario: Scenario) -> list[Any]:
    """The transcript body without notes and without the excluded exchanges."""
    kept = []
    skipping = False
    for line in t.body:
        if line.direction == "<<":
            skipping = line.wire in scenario.exclude
        if line.direction == "##" or skipping:
            continue
        kept.append(line)
    return kept


@dataclass
class Replayed:
    env: list[str]
    replies: list[tuple[str, str]]  # (command it follows, line as read)
    eof_seen: bool


async def drive(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    t: Transcript,
    scenario: Scenario,
    scale: float,
) -> Replayed:
    """The recording server's side of the transcript, replayed."""
    env: list[str] = []
    while True:
        raw = await asyncio.wait_for(reader.readline(), IO_TIMEOUT)
        assert raw.endswith(b"\n"), f"agi_* block cut short: {env} + {raw!r}"
        env.append(raw[:-1].decode())
        if raw == b"\n":
            break
    lines = replay_lines(t, scenario)
    replies: list[tuple[str, str]] = []
    eof_seen = False
    last_command = ""
    previous_ms = t.body[0].ms if t.body and t.body[0].ms is not None else 0.0
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.direction == "<<":
            group = [line]  # commands recorded at the same instant went out in one write
            while (
                i + len(group) < len(lines)
                and lines[i + len(group)].direction == "<<"
                and lines[i + len(group)].ms == line.ms
            ):
                group.append(lines[i + len(group)])
            if scenario.timed and line.ms is not None:
                await asyncio.sleep(max(0.0, line.ms - previous_ms) / 1000 * scale)
            data = "".join(f"{g.wire}\n" for g in group)
            if scenario.partial_last and i + len(group) == len(lines):
                data = data[:-1]
            try:
                writer.write(data.encode())
                await writer.drain()
            except ConnectionError:
                pass  # Asterisk closed first (AGIEXITONHANGUP)
            last_command = group[-1].wire
            previous_ms = line.ms if line.ms is not None else previous_ms
            i += len(group)
            continue
        if line.is_eof:
            try:
                rest = await asyncio.wait_for(reader.read(), IO_TIMEOUT)
            except ConnectionError:
                rest = b""
            assert rest == b"", f"expected Asterisk to close, got {rest!r}"
            eof_seen = True
        else:
            raw = await asyncio.wait_for(reader.readline(), IO_TIMEOUT)
            replies.append((last_command, raw.decode().removesuffix("\n")))
        previous_ms = line.ms if line.ms is not None else previous_ms
        i += 1
    if scenario.close_at_note:
        close_ms = next(
            line.ms
            for line in t.lines
            if line.direction == "##" and "server closes" in line.text and line.ms is not None
        )
        await asyncio.sleep(max(0.0, close_ms - previous_ms) / 1000 * scale)
    writer.close()
    try:
        await writer.wait_closed()
    except ConnectionError:
        pass
    return Replayed(env, replies, eof_seen)


async def replay(
    t: Transcript, scenario: Scenario, script: CallScript
) -> tuple[Replayed, CallRecord]:
    """Run the fake against a server replaying `t`; both sides' views."""
    done: asyncio.Future[Replayed] = asyncio.get_running_loop().create_future()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            done.set_result(await drive(reader, writer, t, scenario, script.time_scale))
        except Exception as exc:  # noqa: BLE001 - handed to the test, which re-raises it
            done.set_exception(exc)
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        record = await asyncio.wait_for(place_call("127.0.0.1", port, script), 4 * IO_TIMEOUT)
        replayed = await asyncio.wait_for(done, IO_TIMEOUT)
    finally:
        server.close()
        await server.wait_closed()
    return replayed, record


NUMBER = re.compile(r"-?\d+\.\d+")


def as_expected(expected: str, actual: str, tolerance: float | None) -> str:
    """`actual`, or `expected` if they differ only in decimals within `tolerance` seconds."""
    if actual == expected or tolerance is None:
        return actual
    if NUMBER.split(actual) != NUMBER.split(expected):
        return actual
    pairs = zip(NUMBER.findall(expected), NUMBER.findall(actual), strict=True)
    if all(abs(Decimal(e) - Decimal(a)) <= Decimal(str(tolerance)) for e, a in pairs):
        return expected
    return actual


def tolerance_for(command: str, scenario: Scenario) -> float | None:
    return next((tol for part, tol in scenario.approx.items() if part in command), None)


def normalised(
    replies: Sequence[tuple[str, str]], expected: Sequence[str], scenario: Scenario
) -> list[str]:
    """The replies' texts, clock readings within tolerance replaced by the expected ones."""
    return [
        as_expected(exp, text, tolerance_for(command, scenario))
        for (command, text), exp in zip(replies, [*expected, *[""] * len(replies)], strict=False)
    ]


def record_replies(record: CallRecord) -> tuple[list[str], list[tuple[str, str]]]:
    """The fake's record: its agi_* block, then (last command, line) for every line it sent."""
    env: list[str] = []
    replies: list[tuple[str, str]] = []
    command = ""
    for direction, _, text in record.lines:
        if direction == "<<":
            command = text
        elif direction == ">>" and (not env or env[-1] != ""):
            env.append(text)
        elif direction == ">>":
            replies.append((command, text))
    return env, replies


async def check(scenario: Scenario) -> CallRecord:
    t = load(scenario.name)
    script = script_for(t, scenario)
    replayed, record = await replay(t, scenario, script)

    # 1. What the server read: the agi_* block and every reply, in transcript order.
    if t.has_env:
        assert replayed.env == t.env_lines
    expected = [
        line.wire
        for line in replay_lines(t, scenario)
        if line.direction == ">>" and not line.is_eof
    ]
    assert normalised(replayed.replies, expected, scenario) == expected
    assert replayed.eof_seen == t.closed_by_asterisk

    # 2. The fake's own record agrees: the same block and replies, nothing more.
    sent_env, sent = record_replies(record)
    assert sent_env == replayed.env
    trailing = ["HANGUP"] if scenario.hangup_after_close and script.agisighup else []
    assert normalised(sent, expected + trailing, scenario) == expected + trailing
    wanted_commands = [
        line.wire
        for line in replay_lines(t, scenario)
        if line.direction == "<<" and line.wire not in scenario.unprocessed
    ]
    assert record.commands == wanted_commands
    assert record.closed_by == ("asterisk" if t.closed_by_asterisk else "server")
    assert record.hung_up_by == scenario.hung_up_by
    if t.agistatus is not None:
        assert record.variables["AGISTATUS"] == t.agistatus
    assert len(record.violations) == len(scenario.violations), record.violations
    for pattern in scenario.violations:
        assert any(re.search(pattern, v) for v in record.violations), (pattern, record.violations)
    return record


# --------------------------------------------------------------------------- transcript tests


@pytest.mark.parametrize("scenario", SCENARIOS, ids=str)
async def test_transcript(scenario: Scenario) -> None:
    await check(scenario)


@pytest.mark.parametrize("scenario", TIMED_VARIANTS, ids=str)
async def test_transcript_with_real_gaps(scenario: Scenario) -> None:
    await check(scenario)


@pytest.mark.parametrize("name", ["a1_headers", "b1_misc", "b4h_dial_limit_after_prompt"])
async def test_transcript_with_chunked_writes(name: str) -> None:
    scenario = next(s for s in SCENARIOS if s.name == name)
    await check(replace(scenario, script={**scenario.script, "chunked": True}))


def test_every_transcript_is_replayed_or_excluded_with_a_reason() -> None:
    names = {p.stem for p in TRANSCRIPT_DIR.glob("*.txt")}
    covered = {s.name for s in SCENARIOS} | set(NOT_REPLAYED)
    assert names == covered
    for s in SCENARIOS:
        assert bool(s.exclude) == bool(s.why_excluded), s.name


def test_only_dtmf_interrupts_and_control_stream_file_are_excluded() -> None:
    for s in SCENARIOS:
        for command in s.exclude:
            words = parse_args(command)
            digit_interrupted = words[:2] == ["STREAM", "FILE"] and words[3] != ""
            control = words[:3] == ["CONTROL", "STREAM", "FILE"]
            control_variable = words[:2] == ["GET", "VARIABLE"] and words[2].startswith("CPLAYBACK")
            assert digit_interrupted or control or control_variable, command


# --------------------------------------------------------------------------- records of interest


async def test_dial_record_for_the_talk_stamp_call() -> None:
    record = await check(next(s for s in SCENARIOS if s.name == "b4k_dial_talk_stamp"))
    [dial] = record.dials
    assert dial["dial_string"] == "Local/15550001111@service/n"
    assert (dial["timeout_s"], dial["limit_ms"], dial["warning_ms"]) == (30.0, 20_000, 5_000)
    assert dial["options"]["U"] == "ivr-stamp^Local/8005550100@prepaid-in-00000003;2"
    assert (dial["status"], dial["result"], dial["ended_by"]) == ("ANSWER", 0, "callee")
    assert (dial["started_at_ms"], dial["answered_at_ms"], dial["ended_at_ms"]) == (
        3451,
        5453,
        9454,
    )
    assert dial["talk_ms"] == 4001
    # the engine's arithmetic (b4k): ANSWEREDTIME_MS - (IVR_ANSWERED - CDR(answer,u)) * 1000
    v = record.variables
    stamp = Decimal(v["SHARED(IVR_ANSWERED)"])
    talk = int(v["ANSWEREDTIME_MS"]) - (stamp - Decimal("1795438882.011870")) * 1000
    assert talk == Decimal("4001.870")  # "9454 - 5452 = 4002" in the transcript
    assert record.prompts_played == ["tt-weasels"]


async def test_limit_warning_is_played_and_delays_the_end_of_dial() -> None:
    record = await check(next(s for s in SCENARIOS if s.name == "b4f_dial_limit_warning"))
    [dial] = record.dials
    assert dial["warnings_played"] == [
        ["vm-youhave", "digits/5", "queue-seconds"],  # at 2 s
        ["vm-youhave", "digits/1", "queue-seconds"],  # at 6 s (the one due at 4 s was skipped)
    ]
    assert (dial["talk_ms"], dial["ended_by"]) == (7000, "limit")
    assert dial["ended_at_ms"] - dial["answered_at_ms"] == 6000 + 3 * 977


async def test_limit_warning_file_is_played_as_one_file_and_a_list_is_not_split() -> None:
    # features.c ast_bridge_timelimit() reads LIMIT_WARNING_FILE when Dial starts;
    # limits_interval_playback() plays it with ast_stream_and_wait(), one file, opened as
    # is (main/file.c has no '&' list, app_playback.c has): a list or a missing file
    # plays nothing; empty or "timeleft" is the counting sentence (b4f).
    dial = "EXEC Dial Local/1@service/n,30,gL(10000:4000)"
    script = quick(sounds={"ivr/warning/5": 16_000}, missing_sounds=frozenset({"gone"}),
                   dials=[DialScript(ring_ms=0, talk_ms=20_000)] * 5)
    _, record = await converse(script, [
        "ANSWER",
        "SET VARIABLE LIMIT_WARNING_FILE ivr/warning/5", dial,
        "SET VARIABLE LIMIT_WARNING_FILE ivr/warning&ivr/digits/4", dial,
        "SET VARIABLE LIMIT_WARNING_FILE gone", dial,
        "SET VARIABLE LIMIT_WARNING_FILE TimeLeft", dial,
        'SET VARIABLE LIMIT_WARNING_FILE ""', dial,
    ])
    assert [d["warnings_played"] for d in record.dials] == [
        [["ivr/warning/5"]], [], [],
        [["vm-youhave", "digits/4", "queue-seconds"]], [["vm-youhave", "digits/4", "queue-seconds"]]]
    # a 2 s file at 6 s of a 10 s limit ends before the cut: Dial returns at the limit
    assert record.dials[0]["ended_at_ms"] - record.dials[0]["answered_at_ms"] == 10_000


async def test_get_data_records_digits_and_prompts() -> None:
    record = await check(next(s for s in SCENARIOS if s.name == "b3_get_data"))
    assert record.digits_sent == ["1234", "", "12#", "12", "#", "*9", "98", "55#", "9", "", "#"]
    assert record.prompts_played == ["beep"] * 6 + ["demo-thanks", "beep"]


async def test_caller_hangup_mid_stream_reports_samples_played() -> None:
    record = await check(next(s for s in SCENARIOS if s.name == "c6_hangup_keepalive"))
    assert record.duration_ms == 2000
    assert ("##", 2000, "caller hangs up") in record.lines


# --------------------------------------------------------------------------- conversations


async def converse(
    script: CallScript, commands: Sequence[str], *, close: bool = True
) -> tuple[list[list[str]], CallRecord]:
    """Send `commands` one by one and collect the lines read after each.

    A reply ends with a final line (``200``/``5xx``, or ``520 End...`` after a
    ``520-``); unprompted ``HANGUP`` lines go with the reply they precede.  With
    ``close=False`` the server then keeps the socket open and the lines that
    still arrive until the fake closes it are the last entry.
    """
    answers: list[list[str]] = []
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def read_reply(reader: asyncio.StreamReader) -> list[str]:
        lines: list[str] = []
        while True:
            raw = await asyncio.wait_for(reader.readline(), IO_TIMEOUT)
            if not raw:
                return lines
            lines.append(raw.decode().removesuffix("\n"))
            in_usage = any(line.startswith("520-") for line in lines)
            if in_usage and lines[-1].startswith("520 "):
                return lines
            if not in_usage and lines[-1][:1] in ("2", "5"):
                return lines

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await asyncio.wait_for(reader.readline(), IO_TIMEOUT) != b"\n":
                pass
            for command in commands:
                writer.write(f"{command}\n".encode())
                await writer.drain()
                answers.append(await read_reply(reader))
            if not close:
                tail = await asyncio.wait_for(reader.read(), 4 * IO_TIMEOUT)
                answers.append(tail.decode().splitlines())
            done.set_result(None)
        except Exception as exc:  # noqa: BLE001 - handed to the test, which re-raises it
            done.set_exception(exc)
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        record = await asyncio.wait_for(place_call("127.0.0.1", port, script), 4 * IO_TIMEOUT)
        await asyncio.wait_for(done, IO_TIMEOUT)
    finally:
        server.close()
        await server.wait_closed()
    return answers, record


def quick(**kwargs: Any) -> CallScript:
    kwargs.setdefault("idle_timeout_s", IO_TIMEOUT)
    return CallScript(**kwargs)


async def test_default_agi_block() -> None:
    script = quick(caller_id="+4930123456", extension="+41441234567")
    _, record = await converse(script, [])
    env = [text for d, _, text in record.lines if d == ">>"]
    seq = int(re.search(r"-([0-9a-f]{8});2$", record.channel).group(1), 16)  # type: ignore[union-attr]
    assert env[:5] == [
        "agi_network: yes",
        "agi_network_script: prepaid",
        env[2],
        f"agi_channel: Local/+41441234567@prepaid-in-{seq:08x};2",
        "agi_language: en",
    ]
    assert re.fullmatch(r"agi_request: agi://127\.0\.0\.1:\d+/prepaid", env[2])
    assert f"agi_uniqueid: 1795438347.{seq}" in env and record.uniqueid == f"1795438347.{seq}"
    assert "agi_callerid: +4930123456" in env and "agi_accountcode: " in env
    assert not any(line.startswith("agi_arg_") for line in env)
    assert env[-1] == ""
    assert len(env) == 23  # 22 agi_* lines, as a2 without arguments


async def test_concurrent_calls_get_distinct_channels_and_unique_ids() -> None:
    script = quick(time_scale=0.001)
    commands = ["ANSWER", 'STREAM FILE beep ""', "HANGUP"]
    results = await asyncio.gather(*(converse(script, commands) for _ in range(5)))
    records = [record for _, record in results]
    assert len({r.channel for r in records}) == len({r.uniqueid for r in records}) == 5
    assert all(answers[1] == ["200 result=0 endpos=12000"] for answers, _ in results)


async def test_get_data_variants() -> None:
    script = quick(digits=["12345678#", "12345", "", "7"])
    answers, record = await converse(
        script,
        [
            "ANSWER",
            "GET DATA enter-pin 7000 8",
            "GET DATA enter-pin 7000 4",
            "GET DATA x 0 4",
            "GET DATA x -1 1",
            "HANGUP",
        ],
    )
    assert answers[1:5] == [
        ["200 result=12345678"],
        ["200 result=1234"],  # max digits reached; the 5th key is lost
        ["200 result= (timeout)"],
        ["200 result=7"],
    ]
    # prompt 1.5 s + 8 keys x 250 ms (the 8th key ends it, '#' is never read);
    # prompt + 4 keys; prompt + the 6 s default for the first digit; prompt + 1 key
    ends = [ms for d, ms, _ in record.lines if d == ">>"][-6:-2]
    assert [b - a for a, b in zip([500, *ends], ends, strict=False)] == [3500, 2500, 7500, 1750]


async def test_wait_for_digit_forever_ends_when_the_caller_hangs_up() -> None:
    answers, record = await converse(quick(hangup_at_ms=3000), ["WAIT FOR DIGIT -1", "NOOP"])
    assert answers == [["200 result=-1"], ["HANGUP", "200 result=0"]]
    assert record.duration_ms == 3000 and record.hung_up_by == "caller"
    assert record.variables["AGISTATUS"] == "HANGUP"


async def test_set_and_get_variables_and_functions() -> None:
    script = quick(caller_name="unknown", callingpres=35, caller_id="unknown")
    answers, _ = await converse(
        script,
        [
            'SET VARIABLE EMPTY ""',
            "GET VARIABLE EMPTY",
            "GET FULL VARIABLE ${EMPTY}",
            "GET VARIABLE CALLERID(num)",
            "GET FULL VARIABLE ${CALLERID(pres)}",
            "GET VARIABLE NOSUCHFUNC(x)",
            "SET VARIABLE SHARED(IVR_ANSWERED) 12.5",
            "GET FULL VARIABLE ${SHARED(IVR_ANSWERED)}",
            "GET FULL VARIABLE ${CHANNEL(state)}-${EXTEN:0:3}-${EXTEN:-4}",
            'GET FULL VARIABLE "${CDR(start)} ${CDR(billsec)} ${CDR(disposition)}"',
            "GET FULL VARIABLE ${CALLERID(num)} Local/other;2",
            "GET FULL VARIABLE ${CALLERID(name)} <${CALLERID(num)}>",
            "GET FULL VARIABLE ${CALLERID(name)} <${CALLERID(num)}> ${EXTEN}",
        ],
    )
    assert answers[:11] == [
        ["200 result=1"],
        ["200 result=1 ()"],
        ["200 result=1 ()"],
        ["200 result=1 ()"],
        ["200 result=1 (prohib)"],
        ["200 result=0"],
        ["200 result=1"],
        ["200 result=1 (12.5)"],
        ["200 result=1 (Ring-800-0100)"],
        ["200 result=1 (2026-11-23 12:52:27 0 NO ANSWER)"],
        ["200 result=0"],
    ]
    # An expression with spaces must be quoted (INDEX fact 9): with one space the rest
    # is taken for a channel name (none such: result=0), with more it is a usage error.
    assert answers[11] == ["200 result=0"]
    assert answers[12][0] == "520-Invalid command syntax.  Proper usage follows:"
    assert answers[12][1].startswith("Evaluates the given <replaceable>expression</replaceable>")
    assert answers[12][-1] == "520 End of proper usage."
    assert len(answers[12]) == 6


async def test_exec_playback_answers_splits_files_and_skips_missing_ones() -> None:
    script = quick(missing_sounds=frozenset({"gone"}))
    answers, record = await converse(
        script,
        [
            "CHANNEL STATUS",
            "EXEC Playback a&gone&b",
            "CHANNEL STATUS",
            "GET VARIABLE PLAYBACKSTATUS",
        ],
    )
    assert answers == [
        ["200 result=4"],
        ["200 result=0"],
        ["200 result=6"],
        ["200 result=1 (FAILED)"],
    ]
    assert record.prompts_played == ["a", "b"]
    assert [ms for d, ms, _ in record.lines if d == ">>"][-3] == 500 + 2 * 1500


async def test_stream_file_offset_and_hangup_endpos() -> None:
    script = quick(sounds={"long": 80_000}, hangup_at_ms=3000)
    answers, record = await converse(
        script, ["ANSWER", 'STREAM FILE long "" 4000', "HANGUP", "EXEC Set X=1", "GET VARIABLE X"]
    )
    assert answers == [
        ["200 result=0"],
        ["200 result=-1 endpos=24000"],  # 4000 + 2.5 s x 8000
        ["HANGUP", "511 Command Not Permitted on a dead channel or intercept routine"],
        ["200 result=0"],  # EXEC may run on a dead channel (res_agi.c), Set works
        ["200 result=1 (1)"],
    ]
    assert record.hung_up_by == "caller"


async def test_dial_cancelled_by_the_caller_while_ringing() -> None:
    script = quick(hangup_at_ms=1500, dials=[DialScript(ring_ms=5000)])
    answers, record = await converse(
        script,
        [
            "ANSWER",
            'EXEC Dial "PJSIP/100@trunk,30,gL(60000)"',
            "GET VARIABLE DIALSTATUS",
            "GET VARIABLE ANSWEREDTIME",
        ],
    )
    assert answers == [
        ["200 result=0"],
        ["200 result=-1"],
        ["HANGUP", "200 result=1 (CANCEL)"],
        ["200 result=1 ()"],
    ]
    assert record.dials[0]["status"] == "CANCEL" and record.dials[0]["answered_at_ms"] is None


async def test_dial_without_stamp_context_and_with_a_foreign_channel() -> None:
    script = quick(stamp_context=False, dials=[DialScript(ring_ms=0, talk_ms=1000)] * 2)
    answers, record = await converse(
        script,
        [
            "ANSWER",
            'EXEC Dial "Local/1@x/n,,gU(ivr-stamp^${CHANNEL})"',
            "GET FULL VARIABLE ${SHARED(IVR_ANSWERED)}",
            'EXEC Dial "Local/1@x/n,,U(ivr-stamp^Local/other;2)S(0.5)"',
        ],
    )
    assert answers[1:] == [["200 result=0"], ["200 result=1 ()"], ["200 result=-1"]]
    assert record.dials[0]["timeout_s"] is None
    assert "SHARED(IVR_ANSWERED)" not in record.variables


async def test_agiexitonhangup_after_the_servers_hangup() -> None:
    script = quick(agiexitonhangup=True)
    answers, record = await converse(script, ["ANSWER", "HANGUP"], close=False)
    assert answers == [["200 result=0"], ["200 result=1"], ["HANGUP", "HANGUP"]]
    assert record.closed_by == "asterisk" and record.hung_up_by == "server"


async def test_server_that_never_closes_after_the_hangup_is_recorded() -> None:
    script = quick(hangup_at_ms=0, idle_timeout_s=0.2)
    answers, record = await converse(script, ["ANSWER"], close=False)
    assert answers == [
        ["HANGUP", "511 Command Not Permitted on a dead channel or intercept routine"],
        [],
    ]
    assert record.closed_by is None
    assert record.violations == [
        (
            "server never closed the connection (0.2 s after the hang-up; Asterisk keeps the AGI "
            "channel until the server closes, c6)"
        )
    ]
    assert "AGISTATUS" not in record.variables


async def test_unmodelled_and_unknown_commands_are_violations() -> None:
    answers, record = await converse(quick(), ["GOSUB sub s 1", "FOO", "", "ANSWER\r"])
    assert answers == [["510 Invalid or unknown command"]] * 4
    assert len(record.violations) == 5  # 4 x 510, plus the carriage return


async def test_time_scale_sleeps_real_time() -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    await converse(quick(time_scale=0.05), ["ANSWER", 'STREAM FILE beep ""'])  # 2 s virtual
    assert loop.time() - start >= 0.1


async def test_connection_refused() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(OSError):
        await place_call("127.0.0.1", port, quick())


def test_script_validation() -> None:
    with pytest.raises(ValueError):
        DialScript(outcome="ringing")
    with pytest.raises(ValueError):
        CallScript(time_scale=-1)


# --------------------------------------------------------------------------- parse_args


@pytest.mark.parametrize(
    "line,words",
    [
        ('STREAM FILE "a b" ""', ["STREAM", "FILE", "a b", ""]),
        ('SET VARIABLE X "say \\"hi\\""', ["SET", "VARIABLE", "X", 'say "hi"']),
        (
            'SET CALLERID "\\"Prepaid IVR\\" <8005550100>"',
            ["SET", "CALLERID", '"Prepaid IVR" <8005550100>'],
        ),
        (
            'SET CALLERID "Prepaid IVR" <8005550100>',
            ["SET", "CALLERID", "Prepaid IVR", "<8005550100>"],
        ),
        ('x ""', ["x", ""]),
        ('x "" y', ["x", "", "y"]),
        ('a""', ["a"]),  # a quote that opens mid-word starts no word
        ('"a"b', ["ab"]),
        ('a"b c"d', ["ab cd"]),
        ("a\\\\b", ["a\\b"]),  # \\ -> \
        ("a\\ b", ["a b"]),  # escaped blank
        ("\\n", ["n"]),  # \x -> x
        ("a\\", ["a"]),  # trailing backslash
        ('"unterminated quote', ["unterminated quote"]),
        ("  lead\t\ttabs  ", ["lead", "tabs"]),
        ("a\rb", ["a\rb"]),  # only space and tab separate
        ("", []),
        ("   ", []),
    ],
)
def test_parse_args(line: str, words: list[str]) -> None:
    assert parse_args(line) == words


def test_parse_args_keeps_127_words() -> None:
    assert parse_args(" ".join(str(i) for i in range(200))) == [str(i) for i in range(127)]


def quote(word: str) -> str:
    """The engine's quoting rule (STYLE §2): wrap in quotes, escape \\ and "."""
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


@given(st.lists(st.text(st.characters(codec="utf-8", exclude_characters="\n\0")), max_size=6))
def test_quoting_round_trips_through_parse_args(words: list[str]) -> None:
    assert parse_args(" ".join(quote(w) for w in words)) == words


# --------------------------------------------------------------------------- parser and module


def test_parser_reads_both_layouts() -> None:
    a1 = load("a1_headers")
    assert a1.variables["AGI_ARGS"] == "card,1234 5678,,last"
    assert a1.env["agi_accountcode"] == "" and a1.env["agi_arg_3"] == ""
    assert a1.commands[:2] == ["ANSWER", "HANGUP"]
    assert a1.replies[:4] == ["200 result=0", "200 result=1", "HANGUP", "200 result=0"]
    assert a1.agistatus == "HANGUP" and not a1.closed_by_asterisk
    b4k = load("b4k_dial_talk_stamp")
    assert not b4k.has_env and b4k.commands[0] == "ANSWER" and b4k.lines[0].ms == 2246435.0
    assert b4k.replies[3] == "200 result=1 (1795438887.464)"
    b1 = load("b1_misc")
    assert 'SET CALLERID "\\"Prepaid IVR\\" <8005550100>"' in b1.commands  # recorder's \\ undone
    c1x = load("c1_hangup_in_stream_agiexitonhangup")
    assert c1x.closed_by_asterisk and c1x.replies[-2:] == ["HANGUP", "HANGUP"]
    assert load("d1_connection_refused").lines == ()


def test_parser_rejects_unknown_lines() -> None:
    with pytest.raises(ValueError):
        parse_transcript(">> +  1.0ms  ok\nwhat is this\n", name="bad")


def test_fake_uses_the_standard_library_only() -> None:
    for source in Path(fake_asterisk.__file__).parent.glob("*.py"):
        tree = ast.parse(source.read_text())
        modules = {
            (node.module or "").split(".")[0]
            if isinstance(node, ast.ImportFrom)
            else alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, (ast.Import, ast.ImportFrom))
            and not (isinstance(node, ast.ImportFrom) and node.level > 0)  # its own modules
            for alias in node.names
        }
        modules.discard("__future__")
        assert modules <= set(sys.stdlib_module_names), (source.name, modules - set(sys.stdlib_module_names))
