"""The library reference: panoramisk's FastAGI ``Application`` sending the engine's
recorded command lines, with no store, logs or metrics of ours.

panoramisk's FastAGI server has known bugs (STYLE.md §2): it spins forever when a
peer closes before the end of its headers, takes an unprompted ``HANGUP`` line for
the reply to the pending command, and reads one line of a multi-line ``520``. The
workload never triggers them: every peer sends its whole ``agi_*`` block, no
command gets a ``520``, and the only ``HANGUP`` line comes after the reply to the
last command, which this handler never reads. Readiness is announced on stdout
(``LISTENING <port>``) because a probing connect would trigger the first bug.
``python -m bench.panoramisk_server --port P --scripts S --plan P``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from panoramisk.fast_agi import Application, Request  # no type info shipped: see [[tool.mypy.overrides]]

from bench._reference import run_reference


async def serve(port: int, scripts: dict[str, Any], plan: dict[str, Any]) -> None:
    commands = {name: list(data["commands"]) for name, data in scripts.items()}
    bound = set(plan["bound_callers"])
    blocked = set(plan["blocked_callers"])

    async def prepaid(request: Request) -> None:
        caller = request.headers.get("agi_callerid", "")
        scenario = "blocked" if caller in blocked else "bound" if caller in bound else "first_pin"
        for command in commands[scenario]:
            await request.send_command(command)

    app = Application()
    app.add_route("prepaid", prepaid)
    server = await asyncio.start_server(app.handler, "127.0.0.1", port, backlog=4096, reuse_address=True)
    print(f"LISTENING {port}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    run_reference(serve, __doc__)


if __name__ == "__main__":
    main()
