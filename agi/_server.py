"""The FastAGI listener: accept, read the environment, route on ``agi_network_script``.

The server tracks every call task itself (3.11's ``Server.wait_closed()`` does not
wait for connections) so shutdown can let live calls finish within a grace period,
then cancel the rest — their ``finally`` blocks still run (uvicorn/server.py).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Protocol

from ._channel import AgiChannel, CommandObserver
from ._errors import AgiError, CommandTimeout, ConnectionLost, RemoteProtocolError

__all__ = ["AgiServer", "Handler", "ServerHooks"]

Handler = Callable[[AgiChannel], Awaitable[None]]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK: tuple[Network, ...] = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
_log = logging.getLogger("agi.server")


class ServerHooks(Protocol):
    """What the application wants to know about connections (metrics, logs)."""

    def connection_opened(self) -> None: ...
    def connection_closed(self) -> None: ...
    def protocol_error(self, side: str, error: Exception) -> None: ...
    def unknown_script(self, script: str) -> None: ...
    def peer_refused(self, peer: str) -> None: ...
    def connection_refused(self, active: int) -> None: ...


class _NoHooks:
    def connection_opened(self) -> None:
        pass

    def connection_closed(self) -> None:
        pass

    def protocol_error(self, side: str, error: Exception) -> None:
        _log.warning("agi protocol error (%s side): %s", side, error)

    def unknown_script(self, script: str) -> None:
        _log.warning("unknown agi script %r", script)

    def peer_refused(self, peer: str) -> None:
        _log.warning("agi peer %s is not allowed", peer)

    def connection_refused(self, active: int) -> None:
        _log.warning("agi connection refused: %d open", active)


def peer_allowed(peer: object, allowed: Sequence[Network]) -> bool:
    """Whether ``peername`` (``(host, port, …)``) is in one of the networks; an IPv4 peer
    on an IPv6 socket (``::ffff:10.0.0.1``) counts as its IPv4 address."""
    if not isinstance(peer, tuple) or not peer:
        return False
    try:
        address = ipaddress.ip_address(str(peer[0]).split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in allowed)


class AgiServer:
    def __init__(
        self,
        routes: Mapping[str, Handler],
        *,
        host: str = "127.0.0.1",
        port: int = 4573,
        hooks: ServerHooks | None = None,
        observer: CommandObserver | None = None,
        env_timeout_s: float = 10.0,
        allowed_peers: Sequence[Network] = LOOPBACK,
        max_connections: int = 2000,
    ) -> None:
        self._routes = dict(routes)
        self.host = host
        self.port = port
        self._hooks: ServerHooks = hooks or _NoHooks()
        self._observer = observer
        self._env_timeout_s = env_timeout_s
        self._allowed = tuple(allowed_peers)
        self._max_connections = max_connections
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._accepting = False
        self._draining = False

    @property
    def active_calls(self) -> int:
        return len(self._tasks)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_connect, self.host, self.port,
                                                  reuse_address=True, backlog=4096)
        sock = self._server.sockets[0]
        self.port = sock.getsockname()[1]  # port 0 -> the one the OS chose
        self._accepting = True

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._accepting:
            writer.close()
            return
        # Before a byte of the header block is read: only our Asterisk may talk (FastAGI
        # has no authentication), and never more than max_connections at once.
        peer = writer.get_extra_info("peername")
        if not peer_allowed(peer, self._allowed):
            self._hooks.peer_refused(str(peer[0]) if isinstance(peer, tuple) and peer else repr(peer))
            writer.transport.abort()
            return
        if len(self._tasks) >= self._max_connections:
            self._hooks.connection_refused(len(self._tasks))
            writer.transport.abort()
            return
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._hooks.connection_opened()
        channel = AgiChannel(reader, writer, observer=self._observer,
                             env_timeout_s=self._env_timeout_s)
        channel.peer = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        try:
            await self._serve(channel)
        except asyncio.CancelledError:
            if not self._draining:
                raise
            # Our own shutdown cancelled this call and its finally blocks have run. Ending
            # quietly keeps asyncio's stream callback from logging the task as failed.
        finally:
            self._tasks.discard(task)
            await channel.close()
            self._hooks.connection_closed()

    async def _serve(self, channel: AgiChannel) -> None:
        try:
            env = await channel.read_environment()
        except RemoteProtocolError as exc:
            self._hooks.protocol_error("remote", exc)
            return
        except (ConnectionLost, CommandTimeout, ConnectionError):
            return  # closed or silent before its headers: nothing to serve (d2-like)
        script = env.get("network_script")
        handler = self._routes.get(script)
        if handler is None:
            self._hooks.unknown_script(script)
            try:
                await channel.set_variable("IVR_RESULT", "error")
            except AgiError:
                pass
            return
        await handler(channel)

    async def close(self) -> None:
        """Stop accepting new connections; live calls go on."""
        self._accepting = False
        if self._server is not None:
            # Not wait_closed(): from 3.12 it would also wait for live calls.
            self._server.close()

    async def drain(self, grace_s: float) -> int:
        """Wait up to ``grace_s`` for live calls, then cancel the rest and wait for their
        ``finally`` blocks. Returns how many calls had to be cancelled."""
        pending = set(self._tasks)
        if pending:
            _, pending = await asyncio.wait(pending, timeout=grace_s)
        self._draining = True
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        return len(pending)

    async def serve_forever(self) -> None:
        assert self._server is not None
        await self._server.serve_forever()
