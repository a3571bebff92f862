"""FastAGI for asyncio: a sans-IO codec, a channel adapter and a server.

Imports neither ``ivr`` nor ``rating``.
"""

from ._channel import AgiChannel, GetDataResult
from ._dial import STAMP_CONTEXT, DialOutcome, check_dial_string, dial
from ._codec import MAX_LINE, AgiConnection, State, encode_command, quote
from ._errors import (
    AgiError,
    ChannelHungUp,
    CommandFailed,
    CommandTimeout,
    ConnectionLost,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
)
from ._events import NEED_DATA, ConnectionClosed, Environment, HangupNotice, Reply
from ._server import AgiServer, Handler, ServerHooks

__all__ = [
    "AgiChannel", "GetDataResult", "STAMP_CONTEXT", "DialOutcome", "check_dial_string", "dial", "MAX_LINE", "AgiConnection", "State", "encode_command", "quote",
    "AgiError", "ChannelHungUp", "CommandFailed", "CommandTimeout", "ConnectionLost",
    "LocalProtocolError", "ProtocolError", "RemoteProtocolError", "NEED_DATA", "ConnectionClosed",
    "Environment", "HangupNotice", "Reply", "AgiServer", "Handler", "ServerHooks",
]
