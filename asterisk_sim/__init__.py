"""A simulated Asterisk: the peer of the engine, built from transcripts recorded on a
real Asterisk 22.10.1 (``../shared/asterisk-transcripts/``).

Not the protocol (that is ``agi/``) and not the product: a test and simulation tool,
shipped so that ``ivr call`` and the benchmark can play the Asterisk side of a call
without an Asterisk (as wazo-agid keeps its peer apart from the server). Standard
library only.
"""

from ._ami import AMI_BANNER, AmiServer
from ._fastagi import AGI_VERSION, CallRecord, CallScript, Continuation, DialScript, parse_args, place_call

__all__ = ["AGI_VERSION", "AMI_BANNER", "AmiServer", "CallRecord", "CallScript", "Continuation", "DialScript",
           "parse_args", "place_call"]
