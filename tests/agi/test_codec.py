"""The sans-IO codec, fed whole, byte by byte, with trailing bytes, and fuzzed."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agi import (
    NEED_DATA,
    AgiConnection,
    ConnectionClosed,
    Environment,
    HangupNotice,
    LocalProtocolError,
    RemoteProtocolError,
    Reply,
    State,
    encode_command,
    quote,
)

# At import, not in the test: importing the fake Asterisk inside it made the first
# example exceed hypothesis' 200 ms deadline on a loaded machine (a flaky failure).
from asterisk_sim import parse_args

ENV = (
    b"agi_network: yes\nagi_network_script: prepaid\nagi_channel: Local/8005550100@prepaid-in-00004c09;2\n"
    b"agi_uniqueid: 1795438347.38931\nagi_callerid: 15551230000\nagi_extension: 8005550100\n"
    b"agi_accountcode: \nagi_arg_1: card\nagi_arg_2: 1234 5678\nagi_arg_3: \nagi_arg_4: last\n\n"
)


def events(conn: AgiConnection) -> list[object]:
    out = []
    while True:
        ev = conn.next_event()
        if ev is NEED_DATA:
            return out
        out.append(ev)
        if isinstance(ev, ConnectionClosed):
            return out


def feed(conn: AgiConnection, data: bytes, chunk: int | None) -> list[object]:
    if chunk is None:
        conn.receive_data(data)
        return events(conn)
    out: list[object] = []
    for i in range(0, len(data), chunk):
        conn.receive_data(data[i:i + chunk])
        out += events(conn)
    return out


def started() -> AgiConnection:
    conn = AgiConnection()
    conn.receive_data(ENV)
    [env] = events(conn)
    assert isinstance(env, Environment)
    return conn


@pytest.mark.parametrize("chunk", [None, 1, 7])
def test_environment_whole_and_in_pieces(chunk: int | None) -> None:
    conn = AgiConnection()
    [env] = feed(conn, ENV, chunk)
    assert isinstance(env, Environment)
    assert env.get("uniqueid") == "1795438347.38931"
    assert env.get("accountcode") == ""
    assert env.args == ("card", "1234 5678", "", "last")
    assert conn.state is State.IDLE


REPLIES = [
    (b"200 result=0\n", Reply(200, "0")),
    (b"200 result=-1 endpos=16000\n", Reply(200, "-1", None, {"endpos": "16000"})),
    (b"200 result= (timeout)\n", Reply(200, "", "timeout")),
    (b"200 result=12 (timeout)\n", Reply(200, "12", "timeout")),
    (b"200 result=1 ()\n", Reply(200, "1", "")),
    (b"200 result=1 (John Doe <15551230000> 8005550100)\n",
     Reply(200, "1", "John Doe <15551230000> 8005550100")),
    (b"200 result=1 (start=2026-11-23 12:55:06 answer=x (y) disp=ANSWERED)\n",
     Reply(200, "1", "start=2026-11-23 12:55:06 answer=x (y) disp=ANSWERED")),
    (b"200 result=1 (1795438887.464)\n", Reply(200, "1", "1795438887.464")),
    (b"510 Invalid or unknown command\n", Reply(510, lines=("Invalid or unknown command",))),
    (b"511 Command Not Permitted on a dead channel or intercept routine\n",
     Reply(511, lines=("Command Not Permitted on a dead channel or intercept routine",))),
    (b"520-Invalid command syntax.  Proper usage follows:\nStream the given file.\nReturns digits.\n"
     b"520 End of proper usage.\n",
     Reply(520, lines=("Invalid command syntax.  Proper usage follows:", "Stream the given file.",
                       "Returns digits.", "End of proper usage."))),
    (b"100 result=0 Trying...\n200 result=0\n", Reply(200, "0")),
]


@pytest.mark.parametrize("chunk", [None, 1, 3])
@pytest.mark.parametrize(("wire", "expected"), REPLIES)
def test_replies(wire: bytes, expected: Reply, chunk: int | None) -> None:
    conn = started()
    conn.send("NOOP")
    got = feed(conn, wire, chunk)
    assert got == [expected]
    assert conn.state is State.IDLE


def test_trailing_bytes_stay_for_the_next_event() -> None:
    conn = started()
    conn.send("ANSWER")
    conn.receive_data(b"200 result=0\nHANGUP\n200 res")
    assert events(conn) == [Reply(200, "0"), HangupNotice()]
    assert conn.hung_up


def test_hangup_line_is_not_the_reply() -> None:
    # a1: "<< GET VARIABLE DIALSTATUS", ">> HANGUP", ">> 200 result=0"
    conn = started()
    conn.send("GET VARIABLE", ["DIALSTATUS"])
    conn.receive_data(b"HANGUP\n")
    assert events(conn) == [HangupNotice()]
    assert conn.state is State.AWAITING_REPLY
    conn.receive_data(b"200 result=0\n")
    assert events(conn) == [Reply(200, "0")]


def test_hangup_while_idle_and_eof() -> None:
    conn = started()
    conn.receive_data(b"HANGUP\n")
    conn.receive_data(b"")
    assert events(conn) == [HangupNotice(), ConnectionClosed()]
    assert conn.state is State.CLOSED


@pytest.mark.parametrize("cut", [0, 5, len(ENV) - 1])
def test_eof_at_any_byte_of_the_environment(cut: int) -> None:
    conn = AgiConnection()
    conn.receive_data(ENV[:cut])
    conn.receive_data(b"")
    assert events(conn) == [ConnectionClosed()]


def test_eof_mid_reply_drops_the_partial_line() -> None:
    conn = started()
    conn.send("GET DATA", ["ivr/enter-pin", "5000", "8"])
    conn.receive_data(b"200 resu")
    conn.receive_data(b"")
    assert events(conn) == [ConnectionClosed()]


@pytest.mark.parametrize("garbage", [b"hello\n", b"200 nothing\n", b"xyz: 1\n\n", b"\n"])
def test_malformed_is_a_remote_protocol_error(garbage: bytes) -> None:
    conn = AgiConnection()
    conn.receive_data(garbage)
    with pytest.raises(RemoteProtocolError):
        events(conn)
    assert conn.state is State.ERROR


def test_reply_without_a_command_is_an_error() -> None:
    conn = started()
    conn.receive_data(b"200 result=0\n")
    with pytest.raises(RemoteProtocolError):
        events(conn)


def test_overlong_line_is_refused_without_growing_forever() -> None:
    conn = AgiConnection()
    conn.receive_data(b"agi_x: " + b"a" * 9000)
    with pytest.raises(RemoteProtocolError):
        events(conn)


def test_no_second_command_while_one_is_pending() -> None:
    conn = started()
    conn.send("GET DATA", ["ivr/enter-pin"])
    with pytest.raises(LocalProtocolError):
        conn.send("NOOP")


@pytest.mark.parametrize("bad", ["a\nHANGUP", "x\r", "nul\x00"])
def test_quote_refuses_line_breaks_and_nul(bad: str) -> None:
    with pytest.raises(LocalProtocolError):
        quote(bad)
    conn = started()
    with pytest.raises(LocalProtocolError):
        conn.send("EXEC", ["Playback", bad])
    assert conn.state is State.IDLE  # nothing was sent


def test_too_long_command_is_refused() -> None:
    # res_agi.c's AGI_BUF_LEN is 2048: a longer line would run as two commands.
    assert len(encode_command("EXEC", ["Playback", "a" * 2028])) == 2047
    with pytest.raises(LocalProtocolError):
        encode_command("EXEC", ["Playback", "a" * 2029])


def test_encoding() -> None:
    assert encode_command("GET FULL VARIABLE", ["${SHARED(IVR_ANSWERED)}"]) == \
        b'GET FULL VARIABLE "${SHARED(IVR_ANSWERED)}"\n'
    assert encode_command("STREAM FILE", ["beep", ""]) == b'STREAM FILE "beep" ""\n'


@settings(max_examples=300)
@given(st.binary(max_size=400), st.integers(min_value=1, max_value=50))
def test_fuzz_any_bytes_give_events_or_remote_protocol_error(data: bytes, chunk: int) -> None:
    conn = AgiConnection()
    try:
        feed(conn, data, chunk)
        conn.send("NOOP") if conn.state is State.IDLE else None
        feed(conn, data, chunk)
        conn.receive_data(b"")
        events(conn)
    except RemoteProtocolError:
        assert conn.state is State.ERROR


@settings(max_examples=200)
@given(st.binary(max_size=300))
def test_fuzz_after_environment(data: bytes) -> None:
    conn = started()
    conn.send("NOOP")
    try:
        conn.receive_data(data)
        for ev in events(conn):
            assert isinstance(ev, (Reply, HangupNotice, ConnectionClosed))
    except RemoteProtocolError:
        assert conn.state is State.ERROR


@given(st.lists(st.text(st.characters(codec="utf-8", exclude_characters="\r\n\0"), max_size=40), max_size=6))
def test_engine_quoting_round_trips_through_res_agi_parse_args(words: list[str]) -> None:
    line = encode_command("SET VARIABLE", words).decode("utf-8")
    assert line.endswith("\n")
    assert parse_args(line[:-1]) == ["SET", "VARIABLE", *words]
