"""The floor: a bare asyncio FastAGI server with no store, no logs, no metrics.

It reads the ``agi_*`` block, picks the scenario the engine would (a blocked caller,
a bound caller, else a first-time caller) from two in-memory sets, sends the
engine's recorded command lines one by one, reading one reply line each, and
closes. A raw ``asyncio.Protocol``: what one Python process can do for this
protocol at all. ``python -m bench.bare_server --port P --scripts S --plan P``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bench._reference import run_reference


class _Call(asyncio.Protocol):
    def __init__(self, app: dict[str, Any]) -> None:
        self.app = app
        self.buffer = b""
        self.env: dict[bytes, bytes] | None = {}
        self.commands: list[bytes] = []
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        while (end := self.buffer.find(b"\n")) >= 0:
            line, self.buffer = self.buffer[:end], self.buffer[end + 1:]
            if self.env is not None:  # reading the agi_* block
                if line:
                    key, _, value = line.partition(b": ")
                    self.env[key] = value
                    continue
                caller = self.env.get(b"agi_callerid", b"")
                self.env = None
                scenario = ("blocked" if caller in self.app["blocked"]
                            else "bound" if caller in self.app["bound"] else "first_pin")
                self.commands = list(self.app["commands"][scenario])
            elif line == b"HANGUP":
                continue  # unprompted, not a reply (never sent before the last reply here)
            if not self.commands:
                self.transport.close()
                return
            self.transport.write(self.commands.pop(0))

    def eof_received(self) -> bool:
        return False


async def serve(port: int, scripts: dict[str, Any], plan: dict[str, Any]) -> None:
    app = {
        "commands": {name: [c.encode() + b"\n" for c in data["commands"]] for name, data in scripts.items()},
        "bound": {c.encode() for c in plan["bound_callers"]},
        "blocked": {c.encode() for c in plan["blocked_callers"]},
    }
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Call(app), "127.0.0.1", port, backlog=4096, reuse_address=True)
    print(f"LISTENING {port}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    run_reference(serve, __doc__)


if __name__ == "__main__":
    main()
