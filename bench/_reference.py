"""The command line both reference servers share: ``--port P --scripts S --plan P``,
then ``serve(port, scripts, plan)`` until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from collections.abc import Awaitable, Callable
from typing import Any

Serve = Callable[[int, dict[str, Any], dict[str, Any]], Awaitable[None]]


def run_reference(serve: Serve, description: str | None) -> None:
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--scripts", required=True, help="JSON: scenario -> {commands: [...]}")
    parser.add_argument("--plan", required=True, help="JSON: bound_callers, blocked_callers")
    args = parser.parse_args()
    with open(args.scripts) as f:
        scripts = json.load(f)
    with open(args.plan) as f:
        plan = json.load(f)
    try:
        asyncio.run(serve(args.port, scripts, plan))  # type: ignore[arg-type]
    except KeyboardInterrupt:
        pass
