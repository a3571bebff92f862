"""Errors of the AGI layer.

    AgiError
     ├── ProtocolError
     │    ├── LocalProtocolError    we tried something the protocol forbids (a bad argument,
     │    │                         a command while one is pending)
     │    └── RemoteProtocolError   the peer sent bytes that are not AGI (carries the line)
     ├── ChannelHungUp             the caller is gone; a normal end of a call, not a fault
     ├── ConnectionLost            the socket closed (EOF) before the call was done
     ├── CommandTimeout            a reply did not come in time; the connection is unusable
     └── CommandFailed             Asterisk answered 510 / 520 (carries code and lines)

Like h11's ``_util.py``: our mistakes apart from the peer's.
"""

from __future__ import annotations

__all__ = [
    "AgiError",
    "ChannelHungUp",
    "CommandFailed",
    "CommandTimeout",
    "ConnectionLost",
    "LocalProtocolError",
    "ProtocolError",
    "RemoteProtocolError",
]


class AgiError(Exception):
    """Base of every error raised by the ``agi`` package."""


class ProtocolError(AgiError):
    """The AGI conversation broke a rule."""


class LocalProtocolError(ProtocolError):
    """We were about to break the protocol; nothing was sent."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something that is not AGI."""

    def __init__(self, message: str, line: bytes = b"") -> None:
        super().__init__(message)
        self.line = line


class ChannelHungUp(AgiError):
    """The channel is hung up (HANGUP line, ``511``, or ``result=-1`` on a dead channel)."""


class ConnectionLost(AgiError):
    """The peer closed the connection."""


class CommandTimeout(AgiError):
    """No reply in time. The command may still run in Asterisk, so the connection is dropped."""


class CommandFailed(AgiError):
    """Asterisk refused a command: ``510`` (unknown) or ``520`` (usage)."""

    def __init__(self, code: int, lines: tuple[str, ...]) -> None:
        super().__init__(f"{code} {lines[0] if lines else ''}".strip())
        self.code = code
        self.lines = lines
