"""structlog, configured once: JSON when stderr is not a terminal, the console
renderer on one; stdlib loggers (asyncio, aiosqlite, agi) through the same chain."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from ._safe import printable


def configure(*, json: bool | None = None, level: str = "INFO", cache: bool = True) -> None:
    if json is None:
        json = not sys.stderr.isatty()
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: Any = (structlog.processors.JSONRenderer() if json
                     else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()))
    # JSON escapes every control character itself; the console renderer prints values as
    # they are, so caller-controlled text (caller IDs, peers' lines) is escaped first.
    inert: list[Any] = [] if json else [_inert]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=cache,  # tests reconfigure: no caching there
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    *([structlog.processors.format_exc_info] if json else []), *inert, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiosqlite logs every statement with its parameters at DEBUG (PIN hashes, numbers):
    # never below INFO, whatever the level asked for.
    logging.getLogger("aiosqlite").setLevel(max(logging.INFO, root.level))


def _inert(logger: Any, name: str, event: dict[str, Any]) -> dict[str, Any]:
    return {key: printable(value) if isinstance(value, str) else value for key, value in event.items()}
