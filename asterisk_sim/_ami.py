"""A fake Asterisk Manager Interface: a TCP AMI server tied to the fake FastAGI calls.

It speaks as Asterisk 22.10.1 did in transcripts e4 and e5 (``CoreShowChannels``
during a Dial, ``Hangup`` by name and by regular expression) and, where no
transcript shows the wire, as ``main/manager.c`` and ``main/db.c`` write it:

* the banner ``Asterisk Call Manager/11.0.0`` (the AMI version of Asterisk 22; not
  recorded), every line ends with ``\\r\\n``, a message with an empty line;
* ``Login`` (``Authentication accepted`` then the ``FullyBooted`` event with
  ``Uptime``; a wrong secret: ``Authentication failed`` and the session ends, as
  ``manager.c`` ends it), ``Logoff``, ``Ping`` (``Ping: Pong`` and a ``Timestamp``);
* ``CoreShowChannels``: ``Response: Success`` / ``EventList: start`` / ``Message:
  Channels will follow``, one ``CoreShowChannel`` event per channel with the fields of
  e4, then ``CoreShowChannelsComplete`` / ``EventList: Complete`` and, from
  ``manager.c`` ``astman_send_list_complete_start()``, ``ListItems`` (the recording of
  e4 stops at ``EventList: Complete``: its next message follows without the empty line
  that ends this one). Asterisk lists channels in its container's hash order; the fake
  lists them by creation;
* ``Hangup`` by channel name or uniqueid (``Message: Channel Hungup``, missing:
  ``Error`` / ``No such channel``) or ``Channel: /regex/`` (``EventList: start`` /
  ``Message: Channels hung up will follow``, e5; then, from ``manager.c``, one
  ``ChannelHungup`` event per channel and ``ChannelsHungupListComplete`` with
  ``ListItems``). The answer comes once the channel is gone: e4 and e5 record it after
  the Dial returned (~1 ms after the action);
* ``Getvar`` / ``Setvar`` on a channel, ``DBGet``, ``DBPut``, ``DBDel``, ``DBDelTree``,
  ``DBGetTree`` (``Key`` is the full ``/family/key``; ``db.c``);
* the ``Hangup`` event (class ``call``) when a fake call's channel goes away.

What an AMI ``Hangup`` does to a call is modelled in ``_fastagi`` (``_Call.ami_hangup``):
the AGI channel hung up during ``EXEC Dial`` ends the Dial (``200 result=-1``, then
the bare ``HANGUP`` line, e4); the callee's channel hung up ends the Dial and keeps the
caller (``200 result=0`` with ``g``, e5). Standard library only.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Protocol

__all__ = ["AMI_BANNER", "AmiServer", "AmiChannel"]

AMI_BANNER = "Asterisk Call Manager/11.0.0"
EOL = "\r\n"


class AmiChannel(Protocol):
    """What a fake call shows the AMI (``_fastagi._Call``)."""

    uniqueid: str

    def ami_channels(self) -> list[dict[str, str]]:
        """The call's channels now, each as the fields of a ``CoreShowChannel`` event."""

    def ami_hangup(self, name: str, cause: int) -> bool:
        """Hang up the channel named ``name`` (one of this call's); False if it is not."""

    def ami_getvar(self, name: str, variable: str) -> str | None:
        """A variable or function of the channel ``name``; None if not this call's."""

    def ami_setvar(self, name: str, variable: str, value: str) -> bool:
        """Set a variable on the channel ``name``; False if not this call's."""


class AmiServer:
    """The manager port of one fake Asterisk: its channels are the fake FastAGI calls
    placed with ``place_call(..., ami=server)``, its AstDB is shared with them."""

    def __init__(self, *, username: str = "ivr-engine", secret: str = "secret",
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.username = username
        self.secret = secret
        self.host = host
        self.port = port
        self.astdb: dict[tuple[str, str], str] = {}
        self.calls: dict[str, AmiChannel] = {}
        self.extra_channels: list[dict[str, str]] = []   # channels no fake call owns (e4's harness legs)
        self.actions: list[dict[str, str]] = []          # every action received, in order
        self.started = time.monotonic()
        self._thawed = asyncio.Event()                   # cleared by freeze(): Asterisk under SIGSTOP
        self._thawed.set()
        self._server: asyncio.Server | None = None
        self._sessions: set[_Session] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> AmiServer:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        """Stop listening and drop every session (Asterisk stopped)."""
        if self._server is not None:
            self._server.close()
        for session in list(self._sessions):
            session.abort()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def freeze(self) -> None:
        """As ``kill -STOP``: connections stay open, nothing is answered."""
        self._thawed.clear()

    def thaw(self) -> None:
        self._thawed.set()

    async def restart(self) -> None:
        """Asterisk restarted: same port, uptime from zero (FullyBooted ``Uptime: 0``)."""
        await self.close()
        self.started = time.monotonic()
        await self.start()

    async def __aenter__(self) -> AmiServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ calls

    def register(self, call: AmiChannel) -> None:
        self.calls[call.uniqueid] = call

    def unregister(self, call: AmiChannel, snapshot: dict[str, str] | None, cause: int) -> None:
        """The call's AGI channel is gone: drop it, tell the sessions (``Hangup`` event)."""
        self.calls.pop(call.uniqueid, None)
        if snapshot is not None:
            event = {"Event": "Hangup", "Privilege": "call,all", **_snapshot(snapshot),
                     "Cause": str(cause), "Cause-txt": _CAUSES.get(cause, "Unknown")}
            for session in list(self._sessions):
                session.event("call", event)

    def channels(self) -> list[dict[str, str]]:
        listed = list(self.extra_channels)
        for call in list(self.calls.values()):
            listed.extend(call.ami_channels())
        return listed

    def _owner(self, name: str) -> tuple[AmiChannel | None, str | None]:
        """The call owning the channel named ``name`` (or with that uniqueid), and its name."""
        for call in list(self.calls.values()):
            for channel in call.ami_channels():
                if name in (channel["Channel"], channel["Uniqueid"]):
                    return call, channel["Channel"]
        return None, None

    # ------------------------------------------------------------------ sessions

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = _Session(self, reader, writer)
        self._sessions.add(session)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await session.run()
        finally:
            self._sessions.discard(session)
            if task is not None:
                self._tasks.discard(task)


_CAUSES = {0: "Unknown", 16: "Normal Clearing", 17: "User busy", 19: "No user responding",
           21: "Call Rejected", 41: "Temporary failure"}

# The fields every channel event carries (manager_channels.c ast_manager_build_channel_state_string).
_SNAPSHOT_FIELDS = ("Channel", "ChannelState", "ChannelStateDesc", "CallerIDNum", "CallerIDName",
                    "ConnectedLineNum", "ConnectedLineName", "Language", "AccountCode", "Context",
                    "Exten", "Priority", "Uniqueid", "Linkedid")


def _snapshot(channel: dict[str, str]) -> dict[str, str]:
    return {k: channel.get(k, "") for k in _SNAPSHOT_FIELDS}


def _epoch_now() -> str:
    return f"{Decimal(time.time_ns()) / 1_000_000_000:.6f}"


class _Session:
    """One manager session (``manager.c`` ``session_do``)."""

    def __init__(self, server: AmiServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.authenticated = False
        self.event_classes: set[str] = set()

    def abort(self) -> None:
        transport = self.writer.transport
        transport.abort()

    def write(self, *messages: dict[str, str]) -> None:
        if self.writer.is_closing():
            return
        data = "".join("".join(f"{k}: {v}{EOL}" for k, v in m.items()) + EOL for m in messages)
        self.writer.write(data.encode("utf-8"))

    def event(self, klass: str, event: dict[str, str]) -> None:
        if self.authenticated and (klass in self.event_classes or "all" in self.event_classes):
            self.write(event)

    async def run(self) -> None:
        self.writer.write(f"{AMI_BANNER}{EOL}".encode())
        try:
            while True:
                message = await self._read_message()
                if message is None:
                    break
                await self.server._thawed.wait()
                self.server.actions.append(message)
                if not await self._handle(message):
                    break
                await self.writer.drain()
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self.writer.close()

    async def _read_message(self) -> dict[str, str] | None:
        headers: dict[str, str] = {}
        while True:
            raw = await self.reader.readline()
            if not raw:
                return None
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if not line:
                if headers:
                    return headers
                continue
            key, _, value = line.partition(":")
            headers[key.strip()] = value.strip()

    async def _handle(self, m: dict[str, str]) -> bool:
        """Answer one action; False ends the session."""
        action = _get(m, "Action").lower()
        aid = _get(m, "ActionID")
        idh = {"ActionID": aid} if aid else {}
        if action == "login":
            if _get(m, "Username") == self.server.username and _get(m, "Secret") == self.server.secret:
                self.authenticated = True
                events = _get(m, "Events") or "on"
                self.event_classes = ({"all"} if events.lower() in ("on", "yes", "all")
                                      else set() if events.lower() in ("off", "no")
                                      else {c.strip().lower() for c in events.split(",")})
                self.write({"Response": "Success", **idh, "Message": "Authentication accepted"})
                uptime = str(int(time.monotonic() - self.server.started))
                # manager.c action_login writes FullyBooted to the new session whatever its classes.
                self.write({"Event": "FullyBooted", "Privilege": "system,all", "Uptime": uptime,
                            "LastReload": uptime, "Status": "Fully Booted"})
                return True
            self.write({"Response": "Error", **idh, "Message": "Authentication failed"})
            await self.writer.drain()
            return False
        if not self.authenticated:
            self.write({"Response": "Error", **idh, "Message": "Authentication Required"})
            return True
        handler: Callable[[dict[str, str], dict[str, str]], object] | None = {
            "ping": self._ping, "coreshowchannels": self._core_show_channels, "hangup": self._hangup,
            "getvar": self._getvar, "setvar": self._setvar, "dbget": self._dbget, "dbput": self._dbput,
            "dbdel": self._dbdel, "dbdeltree": self._dbdeltree, "dbgettree": self._dbgettree,
        }.get(action)
        if action == "logoff":
            self.write({"Response": "Goodbye", **idh, "Message": "Thanks for all the fish."})
            return False
        if handler is None:
            self.write({"Response": "Error", **idh,
                        "Message": "Invalid/unknown command: "
                                   f"{_get(m, 'Action')}. Use Action: ListCommands to show available commands."})
            return True
        result = handler(m, idh)
        if asyncio.iscoroutine(result):
            await result
        return True

    # ------------------------------------------------------------------ actions

    def _ping(self, m: dict[str, str], idh: dict[str, str]) -> None:
        self.write({"Response": "Success", **idh, "Ping": "Pong", "Timestamp": _epoch_now()})

    def _core_show_channels(self, m: dict[str, str], idh: dict[str, str]) -> None:
        self.write({"Response": "Success", **idh, "EventList": "start", "Message": "Channels will follow"})
        channels = self.server.channels()
        for channel in channels:
            self.write({"Event": "CoreShowChannel", **idh, **channel})
        self.write({"Event": "CoreShowChannelsComplete", **idh, "EventList": "Complete",
                    "ListItems": str(len(channels))})

    async def _hangup(self, m: dict[str, str], idh: dict[str, str]) -> None:
        target = _get(m, "Channel")
        cause_text = _get(m, "Cause")
        cause = int(cause_text) if cause_text.isdigit() else 16
        if not target:
            self.write({"Response": "Error", **idh, "Message": "No channel specified"})
            return
        if len(target) > 2 and target.startswith("/") and target.endswith("/"):
            try:
                pattern = re.compile(target[1:-1])
            except re.error:
                self.write({"Response": "Error", **idh, "Message": "Regex compile failed on: " + target})
                return
            matched = [c["Channel"] for c in self.server.channels() if pattern.search(c["Channel"])]
            hung = [n for n in matched if self._hangup_one(n, cause)]
            await asyncio.sleep(0.001)  # the cut takes effect before the answer (e5)
            self.write({"Response": "Success", **idh, "EventList": "start",
                        "Message": "Channels hung up will follow"})
            for gone in hung:
                self.write({"Event": "ChannelHungup", "Channel": gone, **idh})
            self.write({"Event": "ChannelsHungupListComplete", **idh, "EventList": "Complete",
                        "ListItems": str(len(hung))})
            return
        call, name = self.server._owner(target)
        if call is None or name is None or not call.ami_hangup(name, cause):
            self.write({"Response": "Error", **idh, "Message": "No such channel"})
            return
        await asyncio.sleep(0.001)  # e4: answered after the Dial returned
        self.write({"Response": "Success", **idh, "Message": "Channel Hungup"})

    def _hangup_one(self, name: str, cause: int) -> bool:
        call, owned = self.server._owner(name)
        return call is not None and owned is not None and call.ami_hangup(owned, cause)

    def _getvar(self, m: dict[str, str], idh: dict[str, str]) -> None:
        variable = _get(m, "Variable")
        if not variable:
            self.write({"Response": "Error", **idh, "Message": "No variable specified"})
            return
        call, name = self.server._owner(_get(m, "Channel"))
        if call is None or name is None:
            self.write({"Response": "Error", **idh, "Message": "No such channel"})
            return
        value = call.ami_getvar(name, variable)
        self.write({"Response": "Success", **idh, "Variable": variable, "Value": value or ""})

    def _setvar(self, m: dict[str, str], idh: dict[str, str]) -> None:
        variable = _get(m, "Variable")
        if not variable:
            self.write({"Response": "Error", **idh, "Message": "No variable specified"})
            return
        call, name = self.server._owner(_get(m, "Channel"))
        if call is None or name is None or not call.ami_setvar(name, variable, _get(m, "Value")):
            self.write({"Response": "Error", **idh, "Message": "No such channel"})
            return
        self.write({"Response": "Success", **idh, "Message": "Variable Set"})

    # db.c manager_dbget / dbput / dbdel / dbdeltree / db_tree_get
    def _family_key(self, m: dict[str, str], idh: dict[str, str], *, key_required: bool) -> tuple[str, str] | None:
        family, key = _get(m, "Family"), _get(m, "Key")
        if not family:
            self.write({"Response": "Error", **idh, "Message": "No family specified."})
            return None
        if key_required and not key:
            self.write({"Response": "Error", **idh, "Message": "No key specified."})
            return None
        return family, key

    def _dbget(self, m: dict[str, str], idh: dict[str, str]) -> None:
        fk = self._family_key(m, idh, key_required=True)
        if fk is None:
            return
        value = self.server.astdb.get(fk)
        if value is None:
            self.write({"Response": "Error", **idh, "Message": "Database entry not found"})
            return
        self.write({"Response": "Success", **idh, "EventList": "start", "Message": "Result will follow"},
                   {"Event": "DBGetResponse", "Family": fk[0], "Key": fk[1], "Val": value, **idh},
                   {"Event": "DBGetComplete", **idh, "EventList": "Complete", "ListItems": "1"})

    def _dbput(self, m: dict[str, str], idh: dict[str, str]) -> None:
        family, key = _get(m, "Family"), _get(m, "Key")
        if not family:
            self.write({"Response": "Error", **idh, "Message": "No family specified"})
            return
        if not key:
            self.write({"Response": "Error", **idh, "Message": "No key specified"})
            return
        self.server.astdb[(family, key)] = _get(m, "Val")
        self.write({"Response": "Success", **idh, "Message": "Updated database successfully"})

    def _dbdel(self, m: dict[str, str], idh: dict[str, str]) -> None:
        fk = self._family_key(m, idh, key_required=True)
        if fk is None:
            return
        if self.server.astdb.pop(fk, None) is None:
            self.write({"Response": "Error", **idh, "Message": "Database entry could not be deleted"})
            return
        self.write({"Response": "Success", **idh, "Message": "Key deleted successfully"})

    def _tree(self, family: str, key: str) -> list[tuple[str, str]]:
        prefix = f"/{family}/{key}" if key else f"/{family}"
        rows = sorted((f"/{f}/{k}", v) for (f, k), v in self.server.astdb.items())
        return [(k, v) for k, v in rows if (k + "/").startswith(prefix + "/")]

    def _dbdeltree(self, m: dict[str, str], idh: dict[str, str]) -> None:
        fk = self._family_key(m, idh, key_required=False)
        if fk is None:
            return
        doomed = self._tree(*fk)
        for full, _ in doomed:
            family, _, key = full[1:].partition("/")
            self.server.astdb.pop((family, key), None)
        if not doomed:
            self.write({"Response": "Error", **idh, "Message": "Database entry not found"})
            return
        self.write({"Response": "Success", **idh, "Message": "Key tree deleted successfully"})

    def _dbgettree(self, m: dict[str, str], idh: dict[str, str]) -> None:
        family, key = _get(m, "Family"), _get(m, "Key")
        rows = self._tree(family, key) if family else sorted(
            (f"/{f}/{k}", v) for (f, k), v in self.server.astdb.items())
        self.write({"Response": "Success", **idh, "EventList": "start", "Message": "Result will follow"})
        for full, value in rows:
            self.write({"Event": "DBGetTreeResponse", "Key": full, "Val": value, **idh})
        self.write({"Event": "DBGetTreeComplete", **idh, "EventList": "Complete", "ListItems": str(len(rows))})


def _get(m: dict[str, str], key: str) -> str:
    """Headers are case-insensitive (``astman_get_header``)."""
    for k, v in m.items():
        if k.lower() == key.lower():
            return v
    return ""
