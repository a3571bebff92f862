"""The backends the store suite runs against (PostgreSQL arrives with its backend)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["store_backends"]


def _sqlite(tmp_path: Path) -> str:
    return str(tmp_path / "store.sqlite3")


def store_backends() -> list[Any]:
    """pytest params: a function tmp_path -> the ``database`` setting."""
    import pytest

    backends: list[tuple[str, Callable[[Path], str]]] = [("sqlite", _sqlite)]
    return [pytest.param(fn, id=name) for name, fn in backends]
