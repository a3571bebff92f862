"""The operator's command line: ``ivr …`` (console entry point ``ivr = ivr.cli:main``).

One module per group: ``projects``, ``cards``, ``blacklist``, ``cdrs``, ``account``, ``routes``
(route and zone);
the engine's own commands (serve, config, demo, call) live in ``_engine``.
"""

from . import (  # noqa: F401  (they register commands)
    _engine,
    account,
    blacklist,
    calls,
    cards,
    cdrs,
    db,
    journal,
    pins,
    projects,
    prompts,
    routes,
)
from ._app import main

__all__ = ["main"]
