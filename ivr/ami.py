"""One reconnecting AMI connection per engine (and per CLI command), through panoramisk.

panoramisk 1.4 against Asterisk 22 has pitfalls, each verified
(``../shared/notes/panoramisk-ami.md``); this module is where they are handled:

1. an exception in an event handler kills the connection: every handler is wrapped;
2. action futures have no timeout, and unanswered actions are re-sent after a
   reconnect: every action is under ``asyncio.wait_for``, and every action we send is
   "forgettable" (never re-sent: a late Hangup must not cut a later call);
3. panoramisk's ping never checks the answer (a frozen Asterisk goes unnoticed): our
   own watchdog pings under a timeout and aborts the transport when it is not answered,
   and panoramisk's reconnect (every ``reconnect_timeout`` = 2 s) logs in again;
4. a wrong secret loops forever without an exception: the login answer is checked,
   reported once (``ami_login_refused``) and given to waiters as ``AmiLoginRefused``;
5. a refused connect keeps retrying in the background: ``close()`` stops it, and no
   connect starts after ``close()``;
6. text was decoded per TCP read with ``errors='ignore'``: ``_Protocol`` decodes with an
   incremental UTF-8 decoder, so a character split across reads survives;
7. headers with empty values are dropped and attribute access returns '' for any key:
   events are read with ``.get()`` only (``BridgeId`` may be missing);
8./9. no Originate is ever sent;
10. events are limited to the ``call`` class (``events='on'`` floods with VarSet).

Errors: ``AmiError`` → ``AmiUnavailable`` (not configured, not connected, no answer in
time) / ``AmiLoginRefused`` (wrong ``ami_user`` / ``ami_secret``).
"""

from __future__ import annotations

import asyncio
import codecs
import logging
from collections.abc import Callable
from typing import Any

import structlog

from ._tasks import cancel_and_wait

__all__ = ["AmiClient", "AmiError", "AmiLoginRefused", "AmiUnavailable", "Channel"]

log = structlog.get_logger("ivr.ami")

# Every action this client sends: none is re-sent after a reconnect (pitfall 2).
_OUR_ACTIONS = ("login", "ping", "coreshowchannels", "hangup", "getvar", "setvar", "dbgettree", "dbdel",
                "dbput", "logoff")

Channel = dict[str, str]   # one CoreShowChannel event's fields


class AmiError(Exception):
    """Base of the AMI errors."""


class AmiUnavailable(AmiError):
    """Not configured, not connected, or Asterisk did not answer in time."""


class AmiLoginRefused(AmiError):
    """Asterisk refused the login: wrong ami_user or ami_secret."""


def _panoramisk() -> tuple[Any, Any]:
    """panoramisk's Manager and protocol with our fixes, imported on first use (not by
    every ``ivr`` command: only those that talk to Asterisk)."""
    global _CLASSES
    if _CLASSES is None:
        _CLASSES = _define()
    return _CLASSES


_CLASSES: tuple[Any, Any] | None = None


def _define() -> tuple[Any, Any]:
    from panoramisk import Manager
    from panoramisk.ami_protocol import AMIProtocol
    from panoramisk.message import Message

    class _Protocol(AMIProtocol):  # type: ignore[misc]  # panoramisk is untyped
        """``AMIProtocol`` with an incremental UTF-8 decoder (pitfall 6) and every message
        handled apart, so that one bad message cannot end the connection (pitfall 1)."""

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

        def data_received(self, data: bytes) -> None:
            text = self._decoder.decode(data)
            if getattr(self, "version", None) is None and text.startswith("Asterisk Call Manager/"):
                self.version = text.partition("\r\n")[0].partition("/")[2].strip()
            if self.queue:
                text = self.queue.popleft() + text
            parts = text.split("\r\n\r\n")
            self.queue.append(parts.pop(-1))
            for part in parts:
                message = Message.from_line(part.strip())
                if message is None:
                    continue
                try:
                    self.handle_message(message)
                except Exception:
                    log.exception("ami_message_failed")

    class _Manager(Manager):  # type: ignore[misc]  # panoramisk is untyped
        """panoramisk's Manager: the login answer checked (pitfall 4), no connect after close (5)."""

        def __init__(self, client: AmiClient, **config: Any) -> None:
            super().__init__(**config)
            self._client = client
            self._closing = False

        def connect(self, run_forever: bool = False, on_startup: Any = None, on_shutdown: Any = None) -> Any:
            if self._closing:
                return None
            task = super().connect()
            task.add_done_callback(_retrieve)
            return task

        def login(self, future: asyncio.Future[Any]) -> bool:
            if future.cancelled():
                return False
            try:
                ok = bool(super().login(future))
            except Exception:
                log.exception("ami_login_failed")
                return False
            if not ok:
                self._client._login_refused(future.result())
            return ok

    def _retrieve(task: asyncio.Future[Any]) -> None:
        if not task.cancelled():
            task.exception()  # panoramisk's connection_made reports it; never "never retrieved"

    return _Manager, _Protocol


class AmiClient:
    """An AMI connection that keeps itself up: logs in, reconnects, watches with its own ping.

    ``on_event(name, fields)`` receives the ``call`` class events (``Hangup`` …) and
    ``FullyBooted``; ``on_login()`` runs after each successful login.
    """

    def __init__(self, host: str, port: int, user: str, secret: str, *, action_timeout_s: float = 5.0,
                 ping_interval_s: float = 5.0, reconnect_s: int = 2,
                 on_event: Callable[[str, dict[str, str]], None] | None = None,
                 on_login: Callable[[], None] | None = None, logger: Any = None) -> None:
        self.log = logger if logger is not None else log
        self.host, self.port, self.user = host, port, user
        self._secret = secret
        self.action_timeout_s = action_timeout_s
        self.ping_interval_s = ping_interval_s
        self.reconnect_s = reconnect_s
        self._on_event = on_event
        self._on_login_hook = on_login
        self._manager: Any = None
        self._ready = asyncio.Event()
        self._refused: str | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self.logins = 0
        self.asterisk_uptime_s: int | None = None
        self._was_connected = False

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def connected(self) -> bool:
        return self._ready.is_set()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start connecting (returns at once; ``wait_ready`` waits for the login)."""
        quiet = logging.getLogger("ivr.ami.panoramisk")
        quiet.setLevel(logging.CRITICAL)  # it logs every failed reconnect; we log state changes
        quiet.propagate = False
        manager_class, protocol_class = _panoramisk()
        self._manager = manager_class(
            self, loop=asyncio.get_running_loop(), host=self.host, port=self.port, username=self.user,
            secret=self._secret, events="call", reconnect_timeout=self.reconnect_s, ping_delay=10**6,
            ping_interval=10**6, protocol_factory=protocol_class, forgetable_actions=_OUR_ACTIONS, log=quiet,
            on_login=self._logged_in, on_disconnect=self._disconnected)
        self._manager.register_event("FullyBooted", self._event)
        self._manager.register_event("Hangup", self._event)
        self._manager.connect()
        self._watchdog = asyncio.create_task(self._watch())

    async def wait_ready(self, timeout_s: float) -> None:
        """Wait for a login. Raises AmiLoginRefused or AmiUnavailable."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not self._ready.is_set():
            if self._refused is not None:
                raise AmiLoginRefused(f"Asterisk at {self.address} refused the login of {self.user!r}"
                                      " (check ami_user and ami_secret)")
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AmiUnavailable(f"no AMI login at {self.address} within {timeout_s:g} s"
                                     " (is Asterisk running, is ami_host/ami_port right?)")
            try:
                await asyncio.wait_for(self._ready.wait(), min(remaining, 0.1))
            except TimeoutError:
                pass

    async def close(self) -> None:
        await cancel_and_wait(self._watchdog)
        if self._manager is not None:
            self._manager._closing = True
            self._manager.close()
        self._ready.clear()

    # ------------------------------------------------------------------ state

    def _logged_in(self, manager: Any) -> None:
        self._refused = None
        self.logins += 1
        self._ready.set()
        self.log.info("ami_connected", address=self.address, logins=self.logins)
        self._was_connected = True
        if self._on_login_hook is not None:
            try:
                self._on_login_hook()
            except Exception:
                self.log.exception("ami_login_hook_failed")

    def _disconnected(self, manager: Any, exc: object) -> None:
        if self._ready.is_set():
            self.log.warning("ami_disconnected", address=self.address, reconnect_s=self.reconnect_s)
        self._ready.clear()

    def _login_refused(self, response: Any) -> None:
        message = response.get("Message", "") if response is not None else ""
        if self._refused is None:
            self.log.error("ami_login_refused", address=self.address, user=self.user, message=message,
                      hint="check ami_user and ami_secret against manager.conf")
        self._refused = message or "refused"

    def _event(self, manager: Any, event: Any) -> None:
        """Every event handler runs here, wrapped (pitfall 1)."""
        try:
            name = event.get("Event", "")
            fields = {str(k): v if isinstance(v, str) else ",".join(v) for k, v in event.items()}
            if name == "FullyBooted":
                uptime = event.get("Uptime", "")
                self.asterisk_uptime_s = int(uptime) if uptime.isdigit() else None
            if self._on_event is not None:
                self._on_event(name, fields)
        except Exception:
            self.log.exception("ami_event_handler_failed")

    async def _watch(self) -> None:
        """Our own ping (pitfall 3): no answer within the action timeout aborts the
        connection, and panoramisk reconnects."""
        while True:
            await asyncio.sleep(self.ping_interval_s)
            if not self._ready.is_set() or self._manager is None:
                continue
            try:
                await self.action({"Action": "Ping"})
            except AmiError:
                self.log.warning("ami_ping_unanswered", address=self.address, timeout_s=self.action_timeout_s)
                protocol = self._manager.protocol
                self._ready.clear()
                if protocol is not None and getattr(protocol, "transport", None) is not None:
                    protocol.transport.abort()
            except Exception:
                self.log.exception("ami_watchdog_failed")

    # ------------------------------------------------------------------ actions

    async def action(self, action: dict[str, str]) -> Any:
        """Send one action and wait for its answer (a Message, or a list for event lists).
        Raises AmiUnavailable when not logged in or not answered within the timeout."""
        manager = self._manager
        if manager is None or not self._ready.is_set() or manager.protocol is None:
            raise AmiUnavailable(f"not connected to the AMI at {self.address}")
        future = manager.send_action(dict(action))
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.action_timeout_s)
        except TimeoutError:
            future.cancel()
            responses = getattr(manager.protocol, "responses", {})
            for key in [k for k, v in responses.items() if v.future is future]:
                responses.pop(key, None)
            raise AmiUnavailable(f"{action.get('Action')}: no answer from {self.address} within"
                                 f" {self.action_timeout_s:g} s") from None

    async def channels(self) -> list[Channel]:
        """CoreShowChannels: every channel Asterisk has now."""
        answer = await self.action({"Action": "CoreShowChannels"})
        messages = answer if isinstance(answer, list) else [answer]
        if messages and messages[0].get("Response") == "Error":
            raise AmiUnavailable(f"CoreShowChannels refused: {messages[0].get('Message', '')}")
        return [_fields(m) for m in messages if m.get("Event") == "CoreShowChannel"]

    async def hangup(self, channel: str, cause: int = 16) -> bool:
        """Hang up ``channel`` (name or uniqueid). False if there is no such channel."""
        answer = await self.action({"Action": "Hangup", "Channel": channel, "Cause": str(cause)})
        return _success(answer)

    async def setvar(self, channel: str, variable: str, value: str) -> bool:
        return _success(await self.action({"Action": "Setvar", "Channel": channel, "Variable": variable,
                                           "Value": value}))

    async def getvar(self, channel: str, variable: str) -> str | None:
        answer = await self.action({"Action": "Getvar", "Channel": channel, "Variable": variable})
        if not _success(answer):
            return None
        return str(answer.get("Value", ""))

    async def db_tree(self, family: str) -> dict[str, str]:
        """DBGetTree of ``family``: key (without the family) -> value."""
        answer = await self.action({"Action": "DBGetTree", "Family": family})
        messages = answer if isinstance(answer, list) else [answer]
        if messages and messages[0].get("Response") == "Error":
            return {}
        prefix = f"/{family}/"
        tree: dict[str, str] = {}
        for m in messages:
            if m.get("Event") == "DBGetTreeResponse":
                key = str(m.get("Key", ""))
                tree[key[len(prefix):] if key.startswith(prefix) else key] = str(m.get("Val", ""))
        return tree

    async def db_del(self, family: str, key: str) -> bool:
        return _success(await self.action({"Action": "DBDel", "Family": family, "Key": key}))


def _success(answer: Any) -> bool:
    first = answer[0] if isinstance(answer, list) and answer else answer
    return bool(first is not None and first.get("Response") == "Success")


def _fields(message: Any) -> Channel:
    """A message's headers as plain strings; a missing header reads as '' (pitfall 7)."""
    return {str(k): v if isinstance(v, str) else ",".join(v) for k, v in message.items()}
