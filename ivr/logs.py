"""structlog, configured once: JSON when stderr is not a terminal, the console
renderer on one; stdlib loggers (asyncio, aiosqlite, agi) through the same chain.

The engine's own events take structlog's native path: a filtering bound logger
(a call below the level is a no-op method) writing the rendered line straight to
stderr. Through stdlib logging each line also built a ``LogRecord``, went through
the handler's lock and ``ProcessorFormatter``: 80 µs a line against 30 µs on this
path, at four or five lines per call (``bench/README.md``). Stdlib loggers keep
``ProcessorFormatter`` with the same processors, so both kinds of line look alike.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from ._safe import printable


class _StderrLogger:
    """Writes each rendered line to ``sys.stderr`` as it is at the time (tests swap it),
    in one write and a flush, as structlog's ``WriteLogger``; a failing write (stderr
    closed, a full pipe) is dropped, as stdlib logging's handler drops it: a log line
    never ends a call. Carries the name a stdlib logger has, so ``add_logger_name``
    gives the same ``logger`` key on both paths."""

    def __init__(self, name: str) -> None:
        self.name = name

    def msg(self, message: str) -> None:
        stream = sys.stderr
        try:
            stream.write(message + "\n")
            stream.flush()
        except (OSError, ValueError):
            pass

    log = debug = info = warn = warning = error = err = critical = fatal = exception = msg


def _logger_factory(*args: Any) -> _StderrLogger:
    return _StderrLogger(str(args[0]) if args else "")


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
    tail: list[Any] = [*([structlog.processors.format_exc_info] if json else []), *inert, renderer]
    numeric = logging.getLevelName(level.upper())
    structlog.configure(
        processors=[*shared, *tail],
        logger_factory=_logger_factory,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        cache_logger_on_first_use=cache,  # tests reconfigure: no caching there
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail],
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
