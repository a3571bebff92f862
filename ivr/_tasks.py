"""Background tasks of the engine (the AMI watchdog, reconciliation, the journal replay)."""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["cancel_and_wait"]


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel a background task and wait until it has ended (its finally blocks ran), so
    nothing of it outlives the component that started it. ``None``: nothing to stop."""
    if task is None:
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
