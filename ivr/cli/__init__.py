"""The operator's command line: ``ivr …`` (console entry point ``ivr = ivr.cli:main``).

One module per group: ``projects``, ``cards``, ``blacklist``, ``cdrs``, ``account``;
the engine's own commands (serve, config, demo, call) live in ``_engine``.
"""

from . import _engine, account, blacklist, cards, cdrs, db, journal, projects, prompts  # noqa: F401  (they register commands)
from ._app import main

__all__ = ["main"]
