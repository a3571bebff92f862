"""FastAGI for asyncio: a sans-IO codec, a channel adapter and a server.

Imports neither ``ivr`` nor ``rating``.
"""

from ._channel import AgiChannel, GetDataResult
from ._codec import MAX_LINE, AgiConnection, State, encode_command, quote
from ._dial import DialReply, check_channel_name, check_dial_string, dial
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
    "MAX_LINE",
    "NEED_DATA",
    "AgiChannel",
    "AgiConnection",
    "AgiError",
    "AgiServer",
    "ChannelHungUp",
    "CommandFailed",
    "CommandTimeout",
    "ConnectionClosed",
    "ConnectionLost",
    "DialReply",
    "Environment",
    "GetDataResult",
    "Handler",
    "HangupNotice",
    "LocalProtocolError",
    "ProtocolError",
    "RemoteProtocolError",
    "Reply",
    "ServerHooks",
    "State",
    "check_channel_name",
    "check_dial_string",
    "dial",
    "encode_command",
    "quote",
]
