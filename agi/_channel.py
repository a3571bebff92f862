"""The one place that awaits: an AGI channel over an asyncio stream.

Intent-level methods (``answer()``, ``playback()``, ``get_data()``, ``dial()`` …)
send one command, wait for its reply with a per-command timeout, and translate
the outcome: ``511`` and ``result=-1`` on a hung-up channel raise
``ChannelHungUp``; ``510``/``520`` raise ``CommandFailed``. A timeout leaves the
command running inside Asterisk, and any further command would abort it with no
reply (transcript b5), so after a timeout the channel refuses further commands.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ._codec import AgiConnection, State
from ._errors import (
    ChannelHungUp,
    CommandFailed,
    CommandTimeout,
    ConnectionLost,
    RemoteProtocolError,
)
from ._events import ConnectionClosed, Environment, HangupNotice, Reply, _NeedData

__all__ = ["AgiChannel", "CommandObserver", "GetDataResult"]

_READ_SIZE = 4096
DEFAULT_TIMEOUT_S = 10.0
MEDIA_TIMEOUT_S = 300.0  # prompts and digit entry; bounded by the prompts' own length

# Called after each command: (keyword, seconds waited, reply or None on failure).
CommandObserver = Callable[[str, float, "Reply | None"], None]


@dataclass(frozen=True)
class GetDataResult:
    digits: str
    timed_out: bool


class AgiChannel:
    """One call's AGI channel. Not safe for concurrent use: one command at a time."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        observer: CommandObserver | None = None,
        env_timeout_s: float = 10.0,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._conn = AgiConnection()
        self._observer = observer
        self._env_timeout_s = env_timeout_s
        self._broken = False
        self.env: Environment | None = None
        self.peer = ""  # the Asterisk's address, as the server accepted it ("" when unknown)

    @property
    def hung_up(self) -> bool:
        """True once Asterisk said HANGUP or refused a command as dead-channel."""
        return self._conn.hung_up

    # --- reading -----------------------------------------------------------
    async def _next(self) -> Environment | Reply | HangupNotice:
        while True:
            event = self._conn.next_event()
            if isinstance(event, _NeedData):
                data = await self._reader.read(_READ_SIZE)
                self._conn.receive_data(data)
                continue
            if isinstance(event, ConnectionClosed):
                raise ConnectionLost("Asterisk closed the connection")
            return event

    async def read_environment(self) -> Environment:
        """Read the ``agi_*`` block. Raises ConnectionLost, RemoteProtocolError, CommandTimeout."""
        try:
            # asyncio.timeout(), not wait_for(): wait_for runs the coroutine in a task of
            # its own, a task per command (3.11); same TimeoutError, less CPU per call.
            async with asyncio.timeout(self._env_timeout_s):
                event = await self._next()
        except TimeoutError:
            raise CommandTimeout("no AGI environment within the timeout") from None
        if not isinstance(event, Environment):  # pragma: no cover - codec guarantees it
            raise RemoteProtocolError("expected the AGI environment")
        self.env = event
        return event

    async def _await_reply(self) -> Reply:
        while True:
            event = await self._next()
            if isinstance(event, Reply):
                return event
            # HangupNotice: noted by the codec (hung_up); the reply is still to come.

    # --- commands ----------------------------------------------------------
    async def command(self, keyword: str, args: Sequence[str] = (), *,
                      timeout_s: float | None = DEFAULT_TIMEOUT_S) -> Reply:
        """Send one command and return its ``200`` reply.

        Raises:
            ChannelHungUp: ``511`` (dead channel).
            CommandFailed: ``510`` or ``520``.
            CommandTimeout, ConnectionLost, RemoteProtocolError, LocalProtocolError.
        """
        if self._broken:
            raise ConnectionLost("channel unusable after an earlier failure")
        data = self._conn.send(keyword, args)
        started = time.perf_counter()
        reply: Reply | None = None
        try:
            self._writer.write(data)
            await self._writer.drain()
            if timeout_s is None:
                reply = await self._await_reply()
            else:
                async with asyncio.timeout(timeout_s):
                    reply = await self._await_reply()
        except TimeoutError:
            self._broken = True
            raise CommandTimeout(f"{keyword}: no reply within {timeout_s} s") from None
        except (ConnectionError, RemoteProtocolError, ConnectionLost) as exc:
            self._broken = True
            if isinstance(exc, ConnectionError):
                raise ConnectionLost(str(exc)) from exc
            raise
        finally:
            if self._observer is not None:
                # EXEC is named with its application (ours, never the caller's: a short,
                # fixed list), so Dial's minutes do not drown Playback's milliseconds.
                name = f"EXEC {args[0]}" if keyword == "EXEC" and args else keyword
                self._observer(name, time.perf_counter() - started, reply)
        if reply.code == 511:
            self._conn.hung_up = True
            raise ChannelHungUp(f"{keyword}: {reply.lines[0] if reply.lines else 511}")
        if reply.code != 200:
            raise CommandFailed(reply.code, reply.lines)
        return reply

    async def _media(self, keyword: str, args: Sequence[str]) -> Reply:
        """A command that plays or listens: ``-1`` means hung up, unless the channel
        turns out alive (a missing file also gives ``-1``, transcripts b2/b3)."""
        reply = await self.command(keyword, args, timeout_s=MEDIA_TIMEOUT_S)
        if reply.result_int == -1:
            await self._confirm_hangup()
        return reply

    async def _confirm_hangup(self) -> None:
        """After ``result=-1``: a HANGUP line may be 40 ms behind (c1), or never come
        (AGISIGHUP=no). ANSWER on a live, answered channel returns at once; on a dead
        one it gets ``511`` — a cheap, certain probe."""
        if self.hung_up:
            raise ChannelHungUp("result=-1 after hangup")
        await self.command("ANSWER")  # raises ChannelHungUp on 511

    async def answer(self) -> None:
        reply = await self.command("ANSWER", timeout_s=DEFAULT_TIMEOUT_S)
        if reply.result_int == -1:
            raise ChannelHungUp("ANSWER failed")

    async def playback(self, sounds: Sequence[str]) -> None:
        """Play sound files in one round trip (``Playback(a&b&c)``); not interruptible."""
        if not sounds:
            return
        reply = await self.command("EXEC", ["Playback", "&".join(sounds)], timeout_s=MEDIA_TIMEOUT_S)
        if reply.result_int == -1:
            raise ChannelHungUp("Playback returned -1")

    async def get_data(self, sound: str, *, timeout_ms: int, max_digits: int) -> GetDataResult:
        reply = await self._media("GET DATA", [sound, str(timeout_ms), str(max_digits)])
        digits = reply.result or ""
        if reply.result_int == -1:
            digits = ""  # channel alive: the prompt file was missing
        return GetDataResult(digits=digits, timed_out=reply.data == "timeout")

    async def set_variable(self, name: str, value: str) -> None:
        await self.command("SET VARIABLE", [name, value])

    async def get_variable(self, name: str) -> str | None:
        """Value of a variable, ``None`` when unset (``200 result=0``). Works on a dead channel."""
        reply = await self.command("GET VARIABLE", [name])
        return reply.data if reply.result == "1" else None

    async def get_full_variable(self, expression: str) -> str:
        """Evaluate ``${…}`` expressions; unset gives ``""``. Works on a dead channel."""
        reply = await self.command("GET FULL VARIABLE", [expression])
        return reply.data or ""

    async def exec(self, application: str, data: str, *, timeout_s: float | None = MEDIA_TIMEOUT_S) -> int:
        reply = await self.command("EXEC", [application, data], timeout_s=timeout_s)
        result = reply.result_int
        if result == -2:
            raise CommandFailed(200, (f"application {application} not found",))
        return result if result is not None else 0

    async def hangup(self) -> None:
        """Ask Asterisk to hang up the channel; a dead channel is fine."""
        try:
            await self.command("HANGUP")
        except ChannelHungUp:
            pass

    async def close(self) -> None:
        """Close our side. Asterisk never closes first (c6), so every call must end here."""
        self._broken = True
        if not self._writer.is_closing():
            self._writer.close()
        try:
            await self._writer.wait_closed()
        except (ConnectionError, OSError):
            pass

    @property
    def state(self) -> State:
        return self._conn.state
