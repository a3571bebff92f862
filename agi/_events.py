"""Events the codec produces from Asterisk's bytes (frozen dataclasses, like h11's)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = ["NEED_DATA", "ConnectionClosed", "Environment", "Event", "HangupNotice", "Reply"]


@dataclass(frozen=True)
class Environment:
    """The ``agi_*: value`` block Asterisk sends on connect, keys without the ``agi_`` prefix."""

    variables: Mapping[str, str]

    def get(self, key: str, default: str = "") -> str:
        return self.variables.get(key, default)

    @property
    def args(self) -> tuple[str, ...]:
        """``agi_arg_1`` … in order (an empty argument stays an empty string)."""
        out: list[str] = []
        n = 1
        while f"arg_{n}" in self.variables:
            out.append(self.variables[f"arg_{n}"])
            n += 1
        return tuple(out)


_NO_FIELDS: Mapping[str, str] = MappingProxyType({})  # read-only: one shared empty mapping


@dataclass(frozen=True)
class Reply:
    """One answer to one command.

    ``200 result=12 (timeout) endpos=3``: code 200, result "12", data "timeout",
    fields {"endpos": "3"}. ``510``/``511``/``520`` keep their text in ``lines``.
    """

    code: int
    result: str | None = None
    data: str | None = None
    fields: Mapping[str, str] = field(default_factory=lambda: _NO_FIELDS)
    lines: tuple[str, ...] = ()

    @property
    def result_int(self) -> int | None:
        try:
            return int(self.result) if self.result not in (None, "") else None
        except ValueError:
            return None


@dataclass(frozen=True)
class HangupNotice:
    """The bare ``HANGUP`` line Asterisk sends unasked. Never the reply to a command."""


@dataclass(frozen=True)
class ConnectionClosed:
    """The peer closed its side (``receive_data(b"")``)."""


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = _NeedData()

Event = Environment | Reply | HangupNotice | ConnectionClosed
