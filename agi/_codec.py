"""A sans-IO FastAGI codec: bytes in, events out; commands in, bytes out.

How this works
--------------
Asterisk (``res_agi.c``) opens with a block of ``agi_key: value`` lines ended by an
empty line, then waits. The application writes one command line; Asterisk answers
with one reply, which is one line (``200 result=0``) except the usage error, which
is ``520-…`` text lines ``520 End of proper usage.``. ``100 result=0 Trying...`` is
a progress line (Gosub) after which the real reply still comes. Independently of
any command, Asterisk writes a bare ``HANGUP`` line when the caller hangs up: it
is *not* the reply to the pending command (transcripts a1, c1, c4).

Like ``h11.Connection`` this class does no I/O: feed it ``receive_data(bytes)``
(``b""`` = end of stream), pull ``next_event()`` until it returns ``NEED_DATA``,
and turn a command into bytes with ``send(...)``. Its states live in one table:

    READING_ENV --empty line--> IDLE --send--> AWAITING_REPLY --reply--> IDLE
    any state --EOF--> CLOSED            any state --garbage--> ERROR

Lines are split on bytes and decoded only when whole (Asterisk writes in small
pieces without TCP_NODELAY, INDEX fact 2); a line longer than ``MAX_LINE`` is a
protocol error, so a misbehaving peer cannot grow the buffer without bound.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from types import MappingProxyType

from ._errors import LocalProtocolError, RemoteProtocolError
from ._events import _NO_FIELDS, NEED_DATA, ConnectionClosed, Environment, Event, HangupNotice, Reply, _NeedData

__all__ = ["MAX_COMMAND", "MAX_LINE", "AgiConnection", "State", "encode_command", "quote"]

# Replies: a line longer than this is not Asterisk talking; refuse it rather than
# let the buffer grow.
MAX_LINE = 8191
# Commands: res_agi.c reads them into char buf[AGI_BUF_LEN] (2048), so a longer
# line would be run as several commands (asterisk_sim records it). Refuse it.
MAX_COMMAND = 2047
_MAX_ENV_LINES = 256
# The header block: Asterisk's values are short (caller ID, channel, request URL), so a
# value or a block far beyond them is a hostile peer, refused before it is stored.
MAX_ENV_VALUE = 1024
MAX_ENV_BYTES = 32768


class State(enum.Enum):
    # Identity hash (members are singletons, compared by identity): Enum's own __hash__
    # is a Python function, and every transition looks a (state, happening) pair up.
    __hash__ = object.__hash__

    READING_ENV = "READING_ENV"
    IDLE = "IDLE"
    AWAITING_REPLY = "AWAITING_REPLY"
    CLOSED = "CLOSED"
    ERROR = "ERROR"


# (state, happening) -> next state. Anything not in the table is an error.
_TRANSITIONS: dict[tuple[State, str], State] = {
    (State.READING_ENV, "env_line"): State.READING_ENV,
    (State.READING_ENV, "env_end"): State.IDLE,
    (State.IDLE, "send"): State.AWAITING_REPLY,
    (State.IDLE, "hangup"): State.IDLE,
    (State.AWAITING_REPLY, "hangup"): State.AWAITING_REPLY,
    (State.AWAITING_REPLY, "progress"): State.AWAITING_REPLY,
    (State.AWAITING_REPLY, "usage_line"): State.AWAITING_REPLY,
    (State.AWAITING_REPLY, "reply"): State.IDLE,
    (State.READING_ENV, "eof"): State.CLOSED,
    (State.IDLE, "eof"): State.CLOSED,
    (State.AWAITING_REPLY, "eof"): State.CLOSED,
}

# ``200 result=<token>`` then optional ``(data)`` then optional ``k=v`` fields.
_REPLY_RE = re.compile(rb"^(\d{3})(?: (.*))?$", re.DOTALL)
_FIELDS_RE = re.compile(r"^(?:\s+[A-Za-z_]+=\S*)*\s*$")
_FIELD_RE = re.compile(r"([A-Za-z_]+)=(\S*)")
_ENV_KEY_RE = re.compile(rb"^agi_[a-z0-9_]+$")
_FORBIDDEN = ("\r", "\n", "\x00")


def quote(arg: str) -> str:
    """Quote one argument so ``res_agi.c``'s ``parse_args`` gives back exactly ``arg``.

    Inside double quotes only ``\\`` and ``"`` need a backslash. CR, LF and NUL
    would end or cut the command line, so they are refused, never rewritten.

    Raises:
        LocalProtocolError: the argument contains CR, LF or NUL.
    """
    for ch in _FORBIDDEN:
        if ch in arg:
            raise LocalProtocolError(f"argument contains {ch!r}, which AGI cannot carry")
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


_KEYWORD_RE = re.compile(r"^[A-Z]+( [A-Z]+)*$")


_KEYWORDS_SEEN: set[str] = set()  # keywords that matched _KEYWORD_RE (a short, fixed list)


def encode_command(keyword: str, args: Sequence[str] = ()) -> bytes:
    """Build one command line: a fixed upper-case keyword, then each argument quoted.

    Raises:
        LocalProtocolError: a bad keyword or argument, or a line over ``MAX_LINE`` bytes.
    """
    if keyword not in _KEYWORDS_SEEN:
        if not _KEYWORD_RE.match(keyword):
            raise LocalProtocolError(f"not an AGI command keyword: {keyword!r}")
        if len(_KEYWORDS_SEEN) < 64:
            _KEYWORDS_SEEN.add(keyword)
    line = " ".join([keyword, *(quote(a) for a in args)]).encode("utf-8") + b"\n"
    if len(line) > MAX_COMMAND:
        raise LocalProtocolError(f"command is {len(line)} bytes, over Asterisk's {MAX_COMMAND}-byte limit")
    return line


# ``200 result=<digits or -digits>`` alone: most replies (SET VARIABLE, ANSWER, EXEC …).
_PLAIN_RE = re.compile(rb"^200 result=(-?\d+)$")


def _parse_reply(line: bytes) -> Reply:
    plain = _PLAIN_RE.match(line)
    if plain is not None:  # the general parse below gives exactly this, at a third of the cost
        return Reply(code=200, result=plain.group(1).decode("ascii"), fields=_NO_FIELDS)
    match = _REPLY_RE.match(line)
    if match is None:
        raise RemoteProtocolError("not an AGI reply", line)
    code = int(match.group(1))
    text = (match.group(2) or b"").decode("utf-8", "replace")
    if code != 200:
        return Reply(code=code, lines=(text,))
    if not text.startswith("result="):
        raise RemoteProtocolError("200 reply without result=", line)
    rest = text[len("result="):]
    token, _, rest = rest.partition(" ")
    data: str | None = None
    if rest.startswith("("):
        # Data may itself contain parentheses and spaces (b4h: "(start=... disp=ANSWERED)"),
        # so take the last ")" after which only k=v fields follow.
        end = len(rest)
        while True:
            end = rest.rfind(")", 0, end)
            if end < 0:
                raise RemoteProtocolError("unbalanced parenthesis in reply data", line)
            if _FIELDS_RE.match(rest[end + 1:]):
                break
        data, rest = rest[1:end], rest[end + 1:]
    elif rest and not _FIELDS_RE.match(" " + rest):
        raise RemoteProtocolError("unparseable text after result", line)
    fields = MappingProxyType(dict(_FIELD_RE.findall(rest)))
    return Reply(code=200, result=token, data=data, fields=fields)


class AgiConnection:
    """The AGI conversation of one call, as a state machine over bytes."""

    def __init__(self) -> None:
        self.state = State.READING_ENV
        self._buffer = bytearray()
        self._eof = False
        self._env: dict[str, str] = {}
        self._env_bytes = 0
        self._usage: list[str] = []
        self.hung_up = False  # set once Asterisk has said HANGUP; it stays said.

    # --- input -------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from the socket; ``b""`` means the peer closed."""
        if self._eof:
            if data:
                raise RemoteProtocolError("data after end of stream", bytes(data[:80]))
            return
        if data:
            self._buffer += data
        else:
            self._eof = True

    def next_event(self) -> Event | _NeedData:
        """Return the next event, or ``NEED_DATA`` when the buffer holds no whole one.

        Raises:
            RemoteProtocolError: the peer's bytes are not AGI; the state becomes ERROR.
        """
        if self.state is State.ERROR:
            raise RemoteProtocolError("connection is in ERROR state")
        try:
            return self._next_event()
        except RemoteProtocolError:
            self.state = State.ERROR
            raise

    def _next_event(self) -> Event | _NeedData:
        while True:
            if self.state is State.CLOSED:
                return NEED_DATA
            if self.state is State.READING_ENV:
                env = self._take_env()
                if env is not None:
                    return env
                if self._eof:
                    self._move("eof")
                    return ConnectionClosed()
                return NEED_DATA
            line = self._take_line()
            if line is None:
                if self._eof:
                    self._move("eof")
                    return ConnectionClosed()
                return NEED_DATA
            event = self._handle_line(line)
            if event is not None:
                return event

    def _take_env(self) -> Environment | None:
        """READING_ENV: every whole header line in the buffer in one pass, the same checks
        as ``_take_line`` and ``_handle_env_line`` line by line (the block is ~25 lines a
        call: taking them one at a time moved the rest of the buffer each time). Returns
        the Environment once the empty line came, else None (more bytes needed)."""
        buf = self._buffer
        start = 0
        try:
            while True:
                end = buf.find(b"\n", start)
                if end >= 0:
                    self._env_bytes += end + 1 - start
                if self._env_bytes > MAX_ENV_BYTES or (end < 0 and len(buf) - start > MAX_ENV_BYTES):
                    raise RemoteProtocolError("AGI environment too large", bytes(buf[start:start + 80]))
                if end < 0:
                    if len(buf) - start > MAX_LINE:
                        raise RemoteProtocolError("line too long", bytes(buf[start:start + 80]))
                    return None
                if end - start > MAX_LINE:
                    raise RemoteProtocolError("line too long", bytes(buf[start:start + 80]))
                line = bytes(buf[start:end])
                start = end + 1
                event = self._handle_env_line(line[:-1] if line.endswith(b"\r") else line)
                if event is not None:
                    assert isinstance(event, Environment)
                    return event
        finally:
            del buf[:start]

    def _take_line(self) -> bytes | None:
        end = self._buffer.find(b"\n")
        if end < 0:
            if len(self._buffer) > MAX_LINE:
                raise RemoteProtocolError("line too long", bytes(self._buffer[:80]))
            # d5: a partial line followed by close is dropped, as Asterisk drops ours.
            return None
        if end > MAX_LINE:
            raise RemoteProtocolError("line too long", bytes(self._buffer[:80]))
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        return line[:-1] if line.endswith(b"\r") else line

    def _handle_line(self, line: bytes) -> Event | None:
        if line == b"HANGUP":
            self._move("hangup")
            self.hung_up = True
            return HangupNotice()
        if self.state is not State.AWAITING_REPLY:
            raise RemoteProtocolError(f"unexpected line in state {self.state.value}", line)
        if self._usage:
            # Inside a 520 block: doc lines do not start with "520" (INDEX fact 3).
            if line.startswith(b"520 "):
                self._usage.append(line[4:].decode("utf-8", "replace"))
                lines = tuple(self._usage)
                self._usage = []
                self._move("reply")
                return Reply(code=520, lines=lines)
            self._move("usage_line")
            self._usage.append(line.decode("utf-8", "replace"))
            return None
        if line.startswith(b"520-"):
            self._move("usage_line")
            self._usage.append(line[4:].decode("utf-8", "replace"))
            return None
        if line.startswith(b"100 "):
            self._move("progress")  # Gosub's "Trying...": the real reply follows.
            return None
        reply = _parse_reply(line)
        self._move("reply")
        return reply

    def _handle_env_line(self, line: bytes) -> Event | None:
        if line == b"":
            if not self._env:
                raise RemoteProtocolError("empty AGI environment", line)
            self._move("env_end")
            return Environment(MappingProxyType(dict(self._env)))
        key, sep, value = line.partition(b":")
        if not sep or not _ENV_KEY_RE.match(key) or len(self._env) >= _MAX_ENV_LINES:
            raise RemoteProtocolError("not an agi_* environment line", line)
        if len(value) > MAX_ENV_VALUE + 1:
            raise RemoteProtocolError(f"AGI environment value over {MAX_ENV_VALUE} bytes", line[:80])
        # "agi_accountcode: " keeps its trailing space on the wire; the value is empty.
        text = value.decode("utf-8", "replace")
        self._env[key[4:].decode("ascii")] = text.removeprefix(" ")
        self._move("env_line")
        return None

    # --- output ------------------------------------------------------------
    def send(self, keyword: str, args: Sequence[str] = ()) -> bytes:
        """Return the bytes of one command and expect its reply.

        Raises:
            LocalProtocolError: not IDLE (a command is pending: sending another would
                abort it without reply, transcript b5), or a bad argument.
        """
        if self.state is not State.IDLE:
            raise LocalProtocolError(f"cannot send a command in state {self.state.value}")
        data = encode_command(keyword, args)
        self._move("send")
        return data

    def _move(self, happening: str) -> None:
        try:
            self.state = _TRANSITIONS[(self.state, happening)]
        except KeyError:
            previous, self.state = self.state, State.ERROR
            raise RemoteProtocolError(f"{happening} not allowed in {previous.value}") from None
