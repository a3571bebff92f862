"""A fake Asterisk: plays the Asterisk side of one FastAGI call over real TCP.

Tests (and the operator command ``ivr call``) use it to drive a FastAGI server
the way Asterisk 22 does: :func:`place_call` connects, sends the ``agi_*``
block, answers every command word for word as the real Asterisk 22.10.1 in
``/work/shared/asterisk-transcripts`` did, and returns a :class:`CallRecord`.

How this works
--------------
The fake mirrors ``res_agi.c``'s ``run_agi()`` loop, not an idealised protocol:

* Two buffers stand in for the socket.  ``_kernel`` holds bytes that arrived
  but were not read yet, ``_stdio`` the bytes ``fgets()`` already pulled into
  its ``FILE`` buffer.  Asterisk polls the *socket*, so a second command that
  arrived in the same write as the first sits in ``_stdio`` and runs only when
  more bytes arrive (b5); a command line is at most 2047 bytes (``AGI_BUF_LEN``).
* Commands are split by a port of ``parse_args()`` and looked up like
  ``find_command()``: case-insensitive words, the first registered command that
  matches wins, extra words are arguments (b1: ``get variable``).
* Each handler ports the ``handle_*()`` function of ``res_agi.c``: its argument
  checks (``RESULT_SHOWUSAGE`` gives the multi-line ``520`` with the XML
  description, as b1 shows), its reply format, whether it may run on a dead
  channel (the ``dead`` column of ``commands[]``: only ``exec``, ``get [full]
  variable``, ``set variable``, ``verbose``, ``noop`` and ``database *``).
* Commands that wait on audio or DTMF (STREAM FILE, GET DATA, WAIT FOR DIGIT,
  GET OPTION, SAY DIGITS/NUMBER/ALPHA/PHONETIC) pass the AGI socket to
  ``ast_waitstream_full()``: bytes arriving while they run abort them and the
  aborted command never gets a reply (b5).  ANSWER, EXEC and the other SAY
  commands do not watch the socket.
* Time is virtual (microseconds since the TCP connect).  Each command advances
  it by its duration: ANSWER ``answer_ms`` (fact 7), a sound file its length
  in 8 kHz samples (``endpos``), DTMF ``dtmf_ms`` per key, a Dial its ring,
  talk, limit and warning prompts.  The server's think time counts as zero,
  except that with ``time_scale > 0`` every virtual span is also slept for
  ``span * time_scale`` real seconds and a caller hang-up due while the server
  is idle fires when that much real time has passed (c4).
* Caller hang-up (``hangup_at_ms``): the running command returns ``-1`` (c1-c3),
  then the loop notices the hung-up channel and writes a bare ``HANGUP`` line
  (unless ``AGISIGHUP=no``); with ``AGIEXITONHANGUP=yes`` it writes it twice
  and closes the socket.  Otherwise Asterisk never closes the socket (c6): the
  fake waits ``idle_timeout_s`` for the server to close and records a
  violation if it does not.  A server ``HANGUP`` takes the same path (a1, b4*).
* EXEC Dial is driven by :class:`DialScript`.  ``ANSWEREDTIME`` counts from the
  IVR channel's own answer and ``DIALEDTIME`` from the channel's creation
  (``app_dial.c`` reads ``ast_channel_get_up_time_ms()`` and
  ``ast_channel_get_duration_ms()`` of the caller), ``L()`` counts from the
  callee's answer, a warning that is playing when the limit cuts delays the
  return of Dial (b4f), ``U(ivr-stamp^<channel>)`` stamps
  ``SHARED(IVR_ANSWERED)`` at the callee's answer (b4k).

* AMI (``place_call(..., ami=AmiServer())``, ``_ami.py``): the call's channels are
  listed by ``CoreShowChannels`` (e4) and can be hung up. With ``time_scale > 0`` an AMI
  Hangup of the AGI channel during ``EXEC Dial`` ends the Dial at once as a caller
  hang-up would (``200 result=-1``, then ``HANGUP``, e4); of the callee's leg, ends it
  and keeps the caller (``200 result=0`` with ``g``, e5). Outside a Dial the hang-up
  takes effect when the running command ends (not modelled mid-command).

* The dialplan after ``AGI()`` (:class:`Continuation`, transcripts e1-e3): the
  engine may die during EXEC Dial; the Dial goes on to its natural end (its reply
  goes to the closed socket). When the session ended without a hang-up
  (``AGISTATUS=SUCCESS``) the dialplan opens a second FastAGI session on the live
  channel; then the channel is gone and each pushed hangup handler (the dialplan's,
  or ``SET VARIABLE CHANNEL(hangup_handler_push)``) opens one on the dead channel
  (no ``HANGUP`` line; GET/SET VARIABLE work, the rest gets ``511``). Variables,
  ``SHARED()`` and AstDB carry over; after the bridge ``CDR(answer,u)`` is the new
  CDR's (e1). Nothing listening: ``AGISTATUS=FAILURE`` and, as asterisk-conf's
  ``[ivr-settle]`` does, the facts go to AstDB. ``[ivr-stamp]`` also stamps the
  callee's hang-up (``SHARED(IVR_ENDED)``, ``stamp_end``).

Not modelled: DTMF typed during a prompt (keys are read after it; STREAM
FILE is never interrupted by a key), ``$[...]`` expressions (left as text),
dialplan functions other than CALLERID, CDR, SHARED, STRFTIME, CHANNEL and
HANGUPCAUSE_KEYS.  CONTROL STREAM FILE, RECORD FILE, SEND TEXT/IMAGE, RECEIVE
TEXT, SET AUTOHANGUP, TDD MODE, GOSUB, ASYNCAGI BREAK and SPEECH * get ``510``
and a violation ("not modelled ..."), so that no test passes on a guess.  SAY
commands play for approximate lengths; EXEC knows Playback, Dial, Set, Wait,
NoOp, Verbose, Answer and Hangup (any other application: ``-2``, as if it did
not exist).
"""

from __future__ import annotations

import asyncio
import itertools
import re
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "AGI_VERSION",
    "CallRecord",
    "CallScript",
    "Continuation",
    "DialScript",
    "parse_args",
    "place_call",
]

AGI_VERSION = "22.10.1"
#: res_agi.c MAX_ARGS: parse_args() keeps at most MAX_ARGS - 1 words.
MAX_ARGS = 128
#: res_agi.c AGI_BUF_LEN: fgets() returns at most AGI_BUF_LEN - 1 bytes per command.
AGI_BUF_LEN = 2048
#: µs per 8 kHz sample (STREAM FILE's endpos counts samples).
_US_PER_SAMPLE = 125
REPLY_UNKNOWN = "510 Invalid or unknown command"
REPLY_DEAD = "511 Command Not Permitted on a dead channel or intercept routine"
USAGE_FIRST = "520-Invalid command syntax.  Proper usage follows:"
USAGE_LAST = "520 End of proper usage."

if TYPE_CHECKING:
    from ._ami import AmiServer

_DIAL_OUTCOMES = ("answer", "busy", "noanswer", "congestion", "chanunavail")

# Asterisk numbers channels and unique ids with global counters; so does the fake,
# so that concurrent calls with default scripts get distinct names.
_SEQUENCE = itertools.count(0x4C09)


# --------------------------------------------------------------------------- args


def parse_args(line: str) -> list[str]:
    """Split one AGI command line into words exactly as ``res_agi.c`` ``parse_args()``.

    Spaces and tabs separate words unless quoted (``"``) or escaped (``\\``); a
    quote toggles quoting and is dropped, ``\\x`` yields ``x``; a quote that opens
    after whitespace starts a word even if it stays empty (``""`` -> ``""``).
    Only the first ``MAX_ARGS - 1`` words are kept.  Returns the words.
    """
    argv: list[str] = []
    quoted = escaped = False
    whitespace = True
    for ch in line:
        if ch == '"' and not escaped:
            quoted = not quoted
            if quoted and whitespace:
                # Starting a quote after white space starts a new word, too.
                argv.append("")
                whitespace = False
            continue
        if ch in " \t" and not quoted and not escaped:
            whitespace = True
            continue
        if ch == "\\" and not escaped:
            escaped = True
            continue
        # "normal:" in res_agi.c
        if whitespace:
            if len(argv) >= MAX_ARGS - 1:
                continue  # "Too many arguments, truncating" (and `escaped` stays set)
            argv.append("")
            whitespace = False
        argv[-1] += ch
        escaped = False
    return argv


def _scan_int(text: str) -> int | None:
    """``sscanf(text, "%30d")``: leading blanks, sign, digits; None if no number."""
    m = re.match(r"\s*([+-]?\d+)", text)
    return int(m.group(1)) if m else None


def _atoi(text: str) -> int:
    """C ``atoi()``."""
    value = _scan_int(text)
    return 0 if value is None else value


# --------------------------------------------------------------------------- scripts


@dataclass
class DialScript:
    """How the callee side behaves for one ``EXEC Dial``.

    ``outcome`` is "answer", "busy", "noanswer", "congestion" or "chanunavail".
    ``ring_ms`` is the ringing before the callee answers (or signals busy or
    congestion; a "noanswer" callee rings until the Dial timeout, "chanunavail"
    fails at once).  ``talk_ms`` is how long an answering callee holds if
    neither the caller nor ``L()`` cuts the call.
    """

    outcome: str = "answer"
    ring_ms: int = 2000
    talk_ms: int = 5000
    # What the AMI shows of the callee (CoreShowChannels, e4): the bridge both legs
    # are in once answered (default: a new uuid), and what a Local peer's ;2 leg runs.
    bridge_id: str | None = None
    callee_app: tuple[str, str] | None = None  # default ("Wait", talk seconds)
    callee_priority: int = 1

    def __post_init__(self) -> None:
        if self.outcome not in _DIAL_OUTCOMES:
            raise ValueError(
                f"DialScript.outcome must be one of {_DIAL_OUTCOMES}: {self.outcome!r}"
            )
        if self.ring_ms < 0 or self.talk_ms < 0:
            raise ValueError("DialScript.ring_ms and talk_ms must be >= 0")


@dataclass
class Continuation:
    """What the dialplan does after ``AGI()`` returns and once the channel is gone.

    ``after_agi``: when the first session ended without a hang-up (``AGISTATUS=SUCCESS``,
    the engine closed or died, e1), the dialplan runs ``AGI(agi://host:port/<script>,<args>)``
    at ``after_agi_priority``; ``handlers``: hangup handler context -> (script, args, priority)
    of the ``AGI()`` it runs on the dead channel (e2, e3); ``pushed``: handlers the dialplan
    pushes before ``AGI()`` (the engine may push more with ``SET VARIABLE
    CHANNEL(hangup_handler_push)``). ``only_with``: run them only while this channel variable
    is non-empty (asterisk-conf's ``IVR_HOLD``). ``unsettled``: (``DB()`` key, value) templates
    written when ``only_with`` is still set after such a session (no engine settled it);
    the variable is then cleared, as ``[ivr-settle]`` does.
    """

    after_agi: tuple[str, tuple[str, ...]] | None = None
    after_agi_priority: int = 6
    handlers: Mapping[str, tuple[str, tuple[str, ...], int]] = field(default_factory=dict)
    pushed: tuple[str, ...] = ()
    only_with: str | None = None
    unsettled: tuple[str, str] | None = None
    port: int | None = None   # where the later sessions go (another engine); default the first's


@dataclass
class CallScript:
    """One simulated call: who calls, what the caller does, how Asterisk is set up.

    ``caller_id`` / ``caller_name`` are ``agi_callerid`` / ``agi_calleridname``
    as Asterisk sends them ("unknown" = none, a2; "anonymous" as is, a3).
    ``digits`` has one entry per GET DATA, WAIT FOR DIGIT or GET OPTION that
    reads keys: "12345678#" = the caller types 12345678 then '#' after the
    prompt, "" = nothing (timeout).  ``dials`` has one entry per EXEC Dial
    (missing entries: ``DialScript()``).  ``hangup_at_ms`` is the virtual ms
    since connect at which the caller hangs up.  ``time_scale`` is the real
    seconds slept per virtual second (0: never sleep); ``idle_timeout_s`` the
    real seconds the fake waits for the server before giving up.

    Additions to the agreed API: ``chunked`` (write in pieces of 3 bytes,
    INDEX fact 2), ``sounds`` (sound name -> length in 8 kHz samples; others
    last ``prompt_ms``), ``missing_sounds`` (files that do not exist),
    ``dtmf_ms`` (one key: 100 ms tone + 150 ms gap, as the harness),
    ``setup_ms`` (the channel's age at connect: DIALEDTIME and CDR(duration)
    count from its creation) and the rest of the ``agi_*`` block: ``context``,
    ``priority``, ``request`` (default ``agi://host:port/network_script``),
    ``threadid``, ``agi_version``.
    """

    caller_id: str = "15551230000"
    caller_name: str = "unknown"
    callingpres: int = 0
    extension: str = "8005550100"
    network_script: str = "prepaid"
    args: tuple[str, ...] = ()
    language: str = "en"
    channel: str | None = None  # default f"Local/{extension}@{context}-{seq:08x};2"
    uniqueid: str | None = None  # default f"{int(start_epoch)}.{seq}"
    start_epoch: Decimal = Decimal("1795438347.000")
    digits: list[str] = field(default_factory=list)
    dials: list[DialScript] = field(default_factory=list)
    hangup_at_ms: int | None = None
    answer_ms: int = 500
    prompt_ms: int = 1500
    agisighup: bool = True
    agiexitonhangup: bool = False
    stamp_context: bool = True
    time_scale: float = 0.0
    idle_timeout_s: float = 30.0
    chunked: bool = False
    sounds: Mapping[str, int] = field(default_factory=dict)
    missing_sounds: frozenset[str] = frozenset()
    dtmf_ms: int = 250
    setup_ms: int = 0
    context: str = "prepaid-in"
    priority: int = 2
    request: str | None = None
    threadid: int = 140541265692352
    agi_version: str = AGI_VERSION
    continuation: Continuation | None = None
    stamp_end: bool = True   # [ivr-stamp] also pushes [ivr-stamp-end]: SHARED(IVR_ENDED) at the callee's hang-up
    # What the AMI shows of the AGI channel (CoreShowChannels, e4): the call's first
    # channel's uniqueid (default: the channel's own) and its connected line.
    linkedid: str | None = None
    connected_num: str = ""
    # The address this Asterisk connects from (None: the OS's choice). Another box in
    # a test: any 127.x.y.z on Linux's loopback, e.g. "127.0.0.2".
    source_address: str | None = None

    def __post_init__(self) -> None:
        if self.time_scale < 0:
            raise ValueError("CallScript.time_scale must be >= 0")
        if self.idle_timeout_s <= 0:
            raise ValueError("CallScript.idle_timeout_s must be > 0")


@dataclass
class CallRecord:
    """What happened on one call, as the fake saw it.

    ``lines``: ("<<" server -> Asterisk | ">>" Asterisk -> server | "##" note,
    virtual ms, text).  ``dials``: one dict per EXEC Dial (dial_string,
    timeout_s, options, limit_ms, warning_ms, repeat_ms, status, started_at_ms,
    answered_at_ms, ended_at_ms, talk_ms, ended_by, warnings_played, peer,
    result).  ``variables``: channel variables at the end, with HANGUPCAUSE,
    ``SHARED(name)`` entries and AGISTATUS once the AGI ended.  ``hung_up_by``:
    "caller", "server" (HANGUP) or None; ``closed_by``: "server", "asterisk"
    (AGIEXITONHANGUP) or None (the fake gave up).  ``uniqueid`` and
    ``channel`` are additions to the agreed API.
    """

    lines: list[tuple[str, int, str]]
    commands: list[str]
    prompts_played: list[str]
    digits_sent: list[str]
    dials: list[dict[str, Any]]
    variables: dict[str, str]
    hung_up_by: str | None
    closed_by: str | None
    violations: list[str]
    duration_ms: int
    uniqueid: str = ""
    channel: str = ""
    sessions: list[CallRecord] = field(default_factory=list)  # the dialplan's later FastAGI sessions
    database: dict[str, str] = field(default_factory=dict)   # AstDB at the end, "family/key" -> value


# --------------------------------------------------------------------------- usage texts


def _lines(*paragraphs: str) -> str:
    return "\n".join(paragraphs)


# ast_xmldoc_build_description("agi", ...) as res_agi.c sends it after "520-...":
# each <para> on one line (newline + tabs collapsed to one space, inline tags
# kept), <enumlist>/<variablelist>/<note> rendered as in main/xmldoc.c.
# GET DATA, SAY NUMBER and WAIT FOR DIGIT are verified by b1; the others are
# derived from the XML in res_agi.c by the same rules.
_SAY_TAIL = (
    " Returns <literal>0</literal> if playback completes without a digit being pressed, or the"
    " ASCII numerical value of the digit if one was pressed or <literal>-1</literal> on error/hangup."
)
_USAGE: dict[tuple[str, ...], str] = {
    ("channel", "status"): _lines(
        (
            "Returns the status of the specified <replaceable>channelname</replaceable>. If no"
            " channel name is given then returns the status of the current channel."
        ),
        "Return values:",
        "    <enum>0</enum> - Channel is down and available.",
        "    <enum>1</enum> - Channel is down, but reserved.",
        "    <enum>2</enum> - Channel is off hook.",
        "    <enum>3</enum> - Digits (or equivalent) have been dialed.",
        "    <enum>4</enum> - Line is ringing.",
        "    <enum>5</enum> - Remote end is ringing.",
        "    <enum>6</enum> - Line is up.",
        "    <enum>7</enum> - Line is busy.",
    ),
    ("database", "del"): "Deletes an entry in the Asterisk database for a given"
    " <replaceable>family</replaceable> and <replaceable>key</replaceable>.\n"
    "Returns <literal>1</literal> if successful, <literal>0</literal> otherwise.",
    ("database", "deltree"): "Deletes a <replaceable>family</replaceable> or specific"
    " <replaceable>keytree</replaceable> within a <replaceable>family</replaceable> in the Asterisk"
    " database.\nReturns <literal>1</literal> if successful, <literal>0</literal> otherwise.",
    ("database", "get"): "Retrieves an entry in the Asterisk database for a given"
    " <replaceable>family</replaceable> and <replaceable>key</replaceable>.\n"
    "Returns <literal>0</literal> if <replaceable>key</replaceable> is not set. Returns"
    " <literal>1</literal> if <replaceable>key</replaceable> is set and returns the variable in"
    " parenthesis.\nExample return code: 200 result=1 (testvariable)",
    ("database", "put"): "Adds or updates an entry in the Asterisk database for a given"
    " <replaceable>family</replaceable>, <replaceable>key</replaceable>, and"
    " <replaceable>value</replaceable>.\n"
    "Returns <literal>1</literal> if successful, <literal>0</literal> otherwise.",
    ("exec",): "Executes <replaceable>application</replaceable> with given"
    " <replaceable>options</replaceable>.\n"
    "Returns whatever the <replaceable>application</replaceable> returns, or <literal>-2</literal>"
    " on failure to find <replaceable>application</replaceable>.\n"
    "<note>NOTE:</note> exec does not evaluate dialplan functions and variables unless it is"
    " explicitly enabled by setting the <variable>AGIEXECFULL</variable> variable to"
    " <literal>yes</literal>.",
    ("get", "data"): "Stream the given <replaceable>file</replaceable>, and receive DTMF data.\n"
    "Returns the digits received from the channel at the other end.",
    ("get", "full", "variable"): "Evaluates the given <replaceable>expression</replaceable> against"
    " the channel specified by <replaceable>channelname</replaceable>, or the current channel if"
    " <replaceable>channelname</replaceable> is not provided.\n"
    "Unlike GET VARIABLE, the <replaceable>expression</replaceable> is processed in a manner similar"
    " to dialplan evaluation, allowing complex and built-in variables to be accessed, e.g."
    " <literal>The time is ${EPOCH}</literal>\n"
    "Returns <literal>0</literal> if no channel matching <replaceable>channelname</replaceable>"
    " exists, <literal>1</literal> otherwise.\n"
    "Example return code: 200 result=1 (The time is 1578493800)",
    ("get", "option"): "Behaves similar to STREAM FILE but used with a timeout option.",
    (
        "get",
        "variable",
    ): "Returns <literal>0</literal> if <replaceable>variablename</replaceable> is"
    " not set. Returns <literal>1</literal> if <replaceable>variablename</replaceable> is set and"
    " returns the variable in parentheses.\nExample return code: 200 result=1 (testvariable)",
    ("hangup",): "Hangs up the specified channel. If no channel name is given, hangs up the"
    " current channel",
    ("receive", "char"): "Receives a character of text on a channel. Most channels do not support"
    " the reception of text. Returns the decimal value of the character if one is received, or"
    " <literal>0</literal> if the channel does not support text reception. Returns"
    " <literal>-1</literal> only on error/hangup.",
    ("say", "alpha"): "Say a given character string, returning early if any of the given DTMF"
    " digits are received on the channel." + _SAY_TAIL,
    ("say", "digits"): "Say a given digit string, returning early if any of the given DTMF digits"
    " are received on the channel." + _SAY_TAIL,
    ("say", "number"): "Say a given number, returning early if any of the given DTMF digits are"
    " received on the channel. " + _SAY_TAIL,
    ("say", "phonetic"): "Say a given character string with phonetics, returning early if any of"
    " the given DTMF digits are received on the channel. Returns <literal>0</literal> if playback"
    " completes without a digit pressed, the ASCII numerical value of the digit if one was pressed,"
    " or <literal>-1</literal> on error/hangup.",
    ("say", "date"): "Say a given date, returning early if any of the given DTMF digits are"
    " received on the channel." + _SAY_TAIL,
    ("say", "time"): "Say a given time, returning early if any of the given DTMF digits are"
    " received on the channel." + _SAY_TAIL,
    ("say", "datetime"): "Say a given time, returning early if any of the given DTMF digits are"
    " received on the channel." + _SAY_TAIL,
    ("set", "context"): "Sets the context for continuation upon exiting the application.",
    ("set", "extension"): "Changes the extension for continuation upon exiting the application.",
    ("set", "music"): "Enables/Disables the music on hold generator. If"
    " <replaceable>class</replaceable> is not specified, then the <literal>default</literal> music"
    " on hold class will be used. This generator will be stopped automatically when playing a"
    " file.\nAlways returns <literal>0</literal>.",
    ("set", "priority"): "Changes the priority for continuation upon exiting the application. The"
    " priority must be a valid priority or label.",
    ("set", "variable"): "Sets a variable to the current channel.",
    ("stream", "file"): _lines(
        (
            "Send the given file, allowing playback to be interrupted by the given digits, if any."
            " Returns <literal>0</literal> if playback completes without a digit being pressed, or"
            " the ASCII numerical value of the digit if one was pressed, or <literal>-1</literal> on"
            " error or if the channel was disconnected. If musiconhold is playing before calling"
            " stream file it will be automatically stopped and will not be restarted after"
            " completion."
        ),
        "It sets the following channel variables upon completion:",
        "<variable>PLAYBACKSTATUS</variable>: The status of the playback attempt as a text string.",
        "    <value>SUCCESS</value>",
        "    <value>FAILED</value>",
    ),
    ("verbose",): "Sends <replaceable>message</replaceable> to the console via verbose message"
    " system. <replaceable>level</replaceable> is the verbose level (1-4). Always returns"
    " <literal>1</literal>",
    ("wait", "for", "digit"): "Waits up to <replaceable>timeout</replaceable> milliseconds for"
    " channel to receive a DTMF digit. Returns <literal>-1</literal> on channel failure,"
    " <literal>0</literal> if no digit is received in the timeout, or the numerical value of the"
    " ascii of the digit if one is received. Use <literal>-1</literal> for the"
    " <replaceable>timeout</replaceable> value if you desire the call to block indefinitely.",
}


@dataclass(frozen=True)
class _Command:
    words: tuple[str, ...]
    handler: str  # name of the _Call method
    dead_ok: bool  # res_agi.c commands[] "dead" column


# res_agi.c commands[] in registration order (find_command() returns the first match),
# plus app_stack.c's "gosub".
_COMMANDS: tuple[_Command, ...] = tuple(
    _Command(tuple(words.split()), handler, dead_ok)
    for words, handler, dead_ok in (
        ("answer", "_cmd_answer", False),
        ("asyncagi break", "_cmd_unmodelled", True),
        ("channel status", "_cmd_channel_status", False),
        ("database del", "_cmd_database_del", True),
        ("database deltree", "_cmd_database_deltree", True),
        ("database get", "_cmd_database_get", True),
        ("database put", "_cmd_database_put", True),
        ("exec", "_cmd_exec", True),
        ("get data", "_cmd_get_data", False),
        ("get full variable", "_cmd_get_full_variable", True),
        ("get option", "_cmd_get_option", False),
        ("get variable", "_cmd_get_variable", True),
        ("hangup", "_cmd_hangup", False),
        ("noop", "_cmd_noop", True),
        ("receive char", "_cmd_receive_char", False),
        ("receive text", "_cmd_unmodelled", False),
        ("record file", "_cmd_unmodelled", False),
        ("say alpha", "_cmd_say", False),
        ("say digits", "_cmd_say", False),
        ("say number", "_cmd_say", False),
        ("say phonetic", "_cmd_say", False),
        ("say date", "_cmd_say", False),
        ("say time", "_cmd_say", False),
        ("say datetime", "_cmd_say", False),
        ("send image", "_cmd_unmodelled", False),
        ("send text", "_cmd_unmodelled", False),
        ("set autohangup", "_cmd_unmodelled", False),
        ("set callerid", "_cmd_set_callerid", False),
        ("set context", "_cmd_set_dialplan", False),
        ("set extension", "_cmd_set_dialplan", False),
        ("set music", "_cmd_set_music", False),
        ("set priority", "_cmd_set_dialplan", False),
        ("set variable", "_cmd_set_variable", True),
        ("stream file", "_cmd_stream_file", False),
        ("control stream file", "_cmd_unmodelled", False),
        ("tdd mode", "_cmd_unmodelled", False),
        ("verbose", "_cmd_verbose", True),
        ("wait for digit", "_cmd_wait_for_digit", False),
        ("speech create", "_cmd_unmodelled", False),
        ("speech set", "_cmd_unmodelled", False),
        ("speech destroy", "_cmd_unmodelled", True),
        ("speech load grammar", "_cmd_unmodelled", False),
        ("speech unload grammar", "_cmd_unmodelled", True),
        ("speech activate grammar", "_cmd_unmodelled", False),
        ("speech deactivate grammar", "_cmd_unmodelled", False),
        ("speech recognize", "_cmd_unmodelled", False),
        ("gosub", "_cmd_unmodelled", False),
    )
)


def _find_command(argv: list[str]) -> _Command | None:
    """res_agi.c find_command(argv, exact=0)."""
    for command in _COMMANDS:
        if len(argv) < len(command.words):
            continue
        if all(w.casefold() == a.casefold() for w, a in zip(command.words, argv, strict=False)):
            return command
    return None


class _ShowUsage(Exception):
    """A handler returned RESULT_SHOWUSAGE."""


class _GiveUp(Exception):
    """Nothing more can happen on this call (the server went silent)."""


# --------------------------------------------------------------------------- Dial


@dataclass
class _DialSpec:
    dial_string: str
    peers: list[str]
    timeout_s: float | None
    options: dict[str, str]
    limit_ms: int | None
    warning_ms: int | None
    repeat_ms: int | None


def _separate_app_args(data: str) -> list[str]:
    """main/app.c ast_app_separate_args(): ',' outside () and quotes; quotes and \\ removed."""
    args: list[str] = []
    current: list[str] = []
    depth = 0
    quoted = False
    chars = iter(data)
    for ch in chars:
        if ch == "\\":
            current.append(next(chars, ""))
        elif ch == '"':
            quoted = not quoted
        elif quoted:
            current.append(ch)
        elif ch == "(":
            depth += 1
            current.append(ch)
        elif ch == ")" and depth:
            depth -= 1
            current.append(ch)
        elif ch == "," and not depth:
            args.append("".join(current))
            current = []
        else:
            current.append(ch)
    args.append("".join(current))
    return args


def _parse_options(text: str) -> dict[str, str]:
    """ast_app_parse_options(): letters, each optionally followed by (argument)."""
    options: dict[str, str] = {}
    i = 0
    while i < len(text):
        letter = text[i]
        i += 1
        arg = ""
        if i < len(text) and text[i] == "(":
            depth, j = 1, i + 1
            while j < len(text) and depth:
                depth += {"(": 1, ")": -1}.get(text[j], 0)
                j += 1
            arg = text[i + 1 : j - 1] if depth == 0 else text[i + 1 :]
            i = j
        options[letter] = arg
    return options


def _parse_dial(data: str) -> _DialSpec:
    args = _separate_app_args(data)
    dial_string = args[0]
    timeout_s: float | None = None
    if len(args) > 1 and args[1].strip():
        try:
            timeout_s = float(args[1])
        except ValueError:
            timeout_s = None
        if timeout_s is not None and timeout_s <= 0:
            timeout_s = None  # "Invalid timeout specified ... Setting timeout to infinite"
    options = _parse_options(args[2]) if len(args) > 2 else {}
    limit_ms = warning_ms = repeat_ms = None
    if "L" in options:
        parts = options["L"].split(":")
        limit_ms = _atoi(parts[0]) or None
        if len(parts) > 1 and parts[1]:
            warning_ms = _atoi(parts[1]) or None
        if len(parts) > 2 and parts[2]:
            repeat_ms = _atoi(parts[2]) or None
        if limit_ms is not None and warning_ms is not None and warning_ms >= limit_ms:
            warning_ms = repeat_ms = None  # app_dial: a warning beyond the limit is never played
    if "S" in options and _atoi(options["S"]) > 0:
        s_limit = _atoi(options["S"]) * 1000
        limit_ms = s_limit if limit_ms is None else min(limit_ms, s_limit)
    return _DialSpec(
        dial_string=dial_string,
        peers=[p for p in dial_string.split("&") if p],
        timeout_s=timeout_s,
        options=options,
        limit_ms=limit_ms,
        warning_ms=warning_ms,
        repeat_ms=repeat_ms,
    )


# --------------------------------------------------------------------------- the call


_CALLINGPRES_NAMES = {
    0: "allowed_not_screened",
    1: "allowed_passed_screen",
    2: "allowed_failed_screen",
    3: "allowed",
    32: "prohib_not_screened",
    33: "prohib_passed_screen",
    34: "prohib_failed_screen",
    35: "prohib",
    67: "unavailable",
}
_STATE_RING = 4
_STATE_UP = 6
_STATE_NAMES = {_STATE_RING: "Ring", _STATE_UP: "Up"}


class _Call:
    """One FastAGI session: the run_agi() loop of res_agi.c over a TCP stream."""

    def __init__(
        self,
        script: CallScript,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        host: str,
        port: int,
        ami: AmiServer | None = None,
    ) -> None:
        self.script = script
        self.ami = ami
        self._reader = reader
        self._writer = writer
        self._kernel = bytearray()  # arrived, not read by fgets() yet
        self._stdio = bytearray()  # in fgets()'s FILE buffer
        self._eof = False
        self._arrived = asyncio.Event()
        self._pump_task: asyncio.Task[None] | None = None
        self._write_failed = False

        seq = next(_SEQUENCE)
        self.channel = script.channel or f"Local/{script.extension}@{script.context}-{seq:08x};2"
        self.uniqueid = script.uniqueid or f"{int(script.start_epoch)}.{seq}"
        own_seq = re.search(r"-([0-9a-f]{8});\d$", self.channel)
        self._peer_seq = itertools.count((int(own_seq.group(1), 16) if own_seq else seq) + 1)
        self.request = script.request or f"agi://{host}:{port}/{script.network_script}"
        self.env_script = script.network_script
        self.env_args: tuple[str, ...] = script.args
        self.env_context, self.env_extension, self.env_priority = script.context, script.extension, script.priority
        self.hangup_handlers: list[str] = [h for h in (script.continuation.pushed if script.continuation else ())]
        self.bridge_ended_us: int | None = None
        self.after_bridge_cdr_us: int | None = None  # e1: after the bridge the dialplan gets a new CDR
        self._pending_end_stamp = False

        self.now_us = 0
        self.created_us = -script.setup_ms * 1000
        self.state = _STATE_RING
        self.answered_us: int | None = None
        self.cdr_end_us: int | None = None
        self.cdr_disposition: str | None = None
        self.hangupcause = 0
        self.caller_num = "" if script.caller_id == "unknown" else script.caller_id
        self.caller_name = "" if script.caller_name == "unknown" else script.caller_name
        self.language = script.language
        self.variables: dict[str, str] = {}
        self.shared: dict[str, str] = {}
        # One Asterisk, one AstDB: shared with the AMI's DBGet/DBPut/DBGetTree.
        self.database: dict[tuple[str, str], str] = ami.astdb if ami is not None else {}
        self._live_dial: _LiveDial | None = None
        self._cut: tuple[str, int] | None = None  # an AMI Hangup during a Dial: ("self"|"callee", cause)
        self._cut_event = asyncio.Event()
        self._ami_hangup_pending = False  # an AMI Hangup of the AGI channel outside a Dial
        self._clock_base: tuple[float, int] | None = None  # (loop time, virtual µs) while a Dial waits
        self._digits = deque(script.digits)
        self._dials = deque(script.dials)

        self.soft_hungup = False  # the channel is hung up (caller or HANGUP)
        self.dead = False  # run_agi() switched to dead mode (after the HANGUP line)
        self.agistatus = "SUCCESS"

        self.record = CallRecord(
            lines=[],
            commands=[],
            prompts_played=[],
            digits_sent=[],
            dials=[],
            variables={},
            hung_up_by=None,
            closed_by=None,
            violations=[],
            duration_ms=0,
            uniqueid=self.uniqueid,
            channel=self.channel,
        )

    # ------------------------------------------------------------------ clock

    @property
    def now_ms(self) -> int:
        return self.now_us // 1000

    def epoch(self, t_us: int) -> Decimal:
        return self.script.start_epoch + Decimal(t_us) / 1_000_000

    def _pending_hangup_us(self) -> int | None:
        if self.script.hangup_at_ms is None or self.soft_hungup:
            return None
        return self.script.hangup_at_ms * 1000

    def _caller_hangs_up(self, at_us: int) -> None:
        self.now_us = max(self.now_us, at_us)
        self._hang_up("caller")
        self._note("caller hangs up")

    def _server_hangs_up(self) -> None:
        self._hang_up("server")

    def _hang_up(self, by: str) -> None:
        self.soft_hungup = True
        if self.record.hung_up_by is None:
            self.record.hung_up_by = by
        if self.cdr_end_us is None:
            self.cdr_end_us = self.now_us

    def _sound_samples(self, name: str) -> int:
        return self.script.sounds.get(name, self.script.prompt_ms * 8)

    def _sound_us(self, name: str) -> int:
        return self._sound_samples(name) * _US_PER_SAMPLE

    # ------------------------------------------------------------------ record

    def _note(self, text: str) -> None:
        self.record.lines.append(("##", self.now_ms, text))

    def _violation(self, text: str) -> None:
        self.record.violations.append(text)
        self._note(f"violation: {text}")

    def _failed(self) -> None:
        """A handler returned RESULT_FAILURE: run_agi() makes AGISTATUS=FAILURE unless hung up."""
        if self.dead or not self.soft_hungup:
            self.agistatus = "FAILURE"

    # ------------------------------------------------------------------ socket

    async def _pump(self) -> None:
        """Move bytes from the socket into the 'kernel' buffer as they arrive."""
        try:
            while True:
                data = await self._reader.read(65536)
                if not data:
                    break
                self._kernel += data
                self._arrived.set()
        except (ConnectionError, OSError):
            pass
        self._eof = True
        self._arrived.set()

    def _readable(self) -> bool:
        """poll() on the AGI socket: unread bytes or end of stream."""
        return bool(self._kernel) or self._eof

    async def _wait_readable(self, timeout_s: float | None, *, ami: bool = False) -> bool:
        """Wait until the socket is readable; False if `timeout_s` passed first.
        ``ami``: an AMI Hangup of the channel also ends the wait (``run_agi()``'s poll
        watches the channel as well as the socket)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        while not self._readable() and not (ami and self._ami_hangup_pending):
            self._arrived.clear()
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                return self._readable()
        return True

    async def _write(self, data: bytes) -> None:
        if self._write_failed or self._writer.is_closing():
            return
        pieces = (
            [data[i : i + 3] for i in range(0, len(data), 3)] if self.script.chunked else [data]
        )
        try:
            for piece in pieces:
                self._writer.write(piece)
                await self._writer.drain()
                if self.script.chunked:
                    await asyncio.sleep(0)
        except (ConnectionError, OSError):
            self._write_failed = True

    async def _send(self, *lines: str) -> None:
        """Write reply lines (one write, as far as TCP lets us) and record them."""
        for line in lines:
            self.record.lines.append((">>", self.now_ms, line))
        await self._write("".join(f"{line}\n" for line in lines).encode("utf-8", "surrogateescape"))

    async def _fgets(self) -> bytes | None:
        """One command line as fgets() + run_agi() read it; None at end of stream."""
        while True:
            newline = self._stdio.find(b"\n")
            if 0 <= newline < AGI_BUF_LEN - 1:
                line = bytes(self._stdio[:newline])
                del self._stdio[: newline + 1]
                return line
            if len(self._stdio) >= AGI_BUF_LEN - 1:
                line = bytes(self._stdio[: AGI_BUF_LEN - 1])
                del self._stdio[: AGI_BUF_LEN - 1]
                self._violation(
                    f"command line longer than {AGI_BUF_LEN - 1} bytes: Asterisk runs it in pieces"
                )
                return line
            if self._kernel:
                self._stdio += self._kernel
                self._kernel.clear()
                waiting = self._stdio.count(b"\n")
                if waiting > 1:
                    self._violation(
                        f"{waiting} command lines arrived at once (sent before the replies); "
                        "Asterisk runs each further line only when more bytes arrive (b5)"
                    )
                continue
            if self._eof:
                if self._stdio:
                    partial = self._stdio.decode("utf-8", "replace")
                    self._violation(f"line without \\n at close, ignored (d5): {partial!r}")
                    self._stdio.clear()
                return None
            if not await self._wait_readable(self.script.idle_timeout_s):
                raise _GiveUp(
                    f"server sent a partial line and nothing for {self.script.idle_timeout_s} s"
                )

    # ------------------------------------------------------------------ time passing

    async def _run(self, duration_us: int | None, *, interruptible: bool) -> str:
        """Let a command run for `duration_us` of virtual time (None: until something ends it).

        Returns "done", "hangup" (the caller hung up; the clock is at the hang-up),
        "aborted" (bytes or end of stream arrived on the AGI socket while an
        interruptible command ran: ast_waitstream_full() returns 1) or
        "stalled" (nothing can ever end it).
        """
        start = self.now_us
        hangup_at = self._pending_hangup_us()
        end = None if duration_us is None else start + duration_us
        if hangup_at is not None and (end is None or hangup_at < end):
            target: int | None = hangup_at
            outcome = "hangup"
        else:
            target, outcome = end, "done"
        if interruptible and self._readable():
            return "aborted"
        scale = self.script.time_scale
        loop = asyncio.get_running_loop()
        if target is None:
            if not interruptible:
                return "stalled"
            t0 = loop.time()
            if await self._wait_readable(self.script.idle_timeout_s):
                if scale:
                    self.now_us += int((loop.time() - t0) / scale * 1_000_000)
                return "aborted"
            return "stalled"
        delay = (target - start) / 1_000_000 * scale
        if delay > 0:
            if interruptible:
                t0 = loop.time()
                if await self._wait_readable(delay):
                    elapsed = int((loop.time() - t0) / scale * 1_000_000)
                    self.now_us = start + min(elapsed, target - start)
                    return "aborted"
            else:
                await asyncio.sleep(delay)
        if outcome == "hangup":
            self._caller_hangs_up(target)
        else:
            self.now_us = target
        return outcome

    def _aborted(self, command: str) -> None:
        if self._eof and not self._kernel:
            self._violation(f"server closed the connection while {command!r} was running (d4)")
        else:
            self._violation(
                f"command sent while {command!r} was running: Asterisk aborted it without a reply (b5)"
            )

    # ------------------------------------------------------------------ main loop

    async def run(self) -> None:
        self._pump_task = asyncio.create_task(self._pump())
        if self.ami is not None:
            self.ami.register(self)
        try:
            await self._send_env()
            await self._loop()
        except _GiveUp as exc:
            self._violation(str(exc))
            self.record.closed_by = None
        finally:
            if self.ami is not None:
                channels = self.ami_channels()
                self.ami.unregister(self, channels[0] if channels else None, self.hangupcause or 16)
        self._finish()

    async def _send_env(self) -> None:
        s = self.script
        env = [
            ("agi_network", "yes"),
            *([("agi_network_script", self.env_script)] if self.env_script else []),
            ("agi_request", self.request),
            ("agi_channel", self.channel),
            ("agi_language", s.language),
            ("agi_type", self.channel.split("/", 1)[0]),
            ("agi_uniqueid", self.uniqueid),
            ("agi_version", s.agi_version),
            ("agi_callerid", s.caller_id),
            ("agi_calleridname", s.caller_name),
            ("agi_callingpres", str(s.callingpres)),
            ("agi_callingani2", "0"),
            ("agi_callington", "0"),
            ("agi_callingtns", "0"),
            ("agi_dnid", "unknown"),
            ("agi_rdnis", "unknown"),
            ("agi_context", self.env_context),
            ("agi_extension", self.env_extension),
            ("agi_priority", str(self.env_priority)),
            ("agi_enhanced", "0.0"),
            ("agi_accountcode", ""),
            ("agi_threadid", str(s.threadid)),
            *[(f"agi_arg_{n}", arg) for n, arg in enumerate(self.env_args, start=1)],
        ]
        await self._send(*[f"{key}: {value}" for key, value in env], "")

    async def _loop(self) -> None:
        while True:
            if self.soft_hungup and not self.dead:
                # run_agi(): needhup -> dead mode, HANGUP line, maybe leave.
                self.dead = True
                if self.agistatus == "SUCCESS":
                    self.agistatus = "HANGUP"
                if self.script.agisighup:
                    await self._send("HANGUP")
                if self.script.agiexitonhangup:
                    if self.script.agisighup:
                        await self._send("HANGUP")  # again after the loop, before fclose()
                    self.record.closed_by = "asterisk"
                    return
            event = await self._poll()
            if event == "ami":
                self._ami_hangup_pending = False
                self._note("AMI Hangup of the AGI channel")
                self._hang_up("ami")
                continue
            if event == "hangup":
                hangup_at = self._pending_hangup_us()
                assert hangup_at is not None
                self._caller_hangs_up(hangup_at)
                continue
            if event == "idle":
                if self.soft_hungup:
                    raise _GiveUp(
                        f"server never closed the connection ({self.script.idle_timeout_s} s after "
                        "the hang-up; Asterisk keeps the AGI channel until the server closes, c6)"
                    )
                raise _GiveUp(f"server sent no command for {self.script.idle_timeout_s} s")
            line = await self._fgets()
            if line is None:
                self.record.closed_by = "server"
                return
            await self._execute(line)

    async def _poll(self) -> str:
        """ast_waitfor_nandfds() on channel and socket: "hangup", "data" or "idle"."""
        if self._ami_hangup_pending and not self.soft_hungup:
            return "ami"
        hangup_at = self._pending_hangup_us()
        if hangup_at is not None and hangup_at <= self.now_us:
            return "hangup"
        if self._readable():
            return "data"
        timeout = self.script.idle_timeout_s
        scale = self.script.time_scale
        if hangup_at is not None and scale > 0:
            until_hangup = (hangup_at - self.now_us) / 1_000_000 * scale
            if until_hangup < timeout:
                readable = await self._wait_readable(until_hangup, ami=True)
                return "ami" if self._ami_hangup_pending and not self.soft_hungup else (
                    "data" if readable else "hangup")
        readable = await self._wait_readable(timeout, ami=True)
        if self._ami_hangup_pending and not self.soft_hungup:
            return "ami"
        return "data" if readable else "idle"

    def _finish(self) -> None:
        record = self.record
        if record.closed_by is not None:
            self.variables["AGISTATUS"] = self.agistatus
        record.variables = dict(self.variables)
        record.variables["HANGUPCAUSE"] = str(self.hangupcause)
        for name, value in self.shared.items():
            record.variables[f"SHARED({name})"] = value
        record.duration_ms = self.now_ms

    async def close(self) -> None:
        if self._pump_task is not None:
            self._pump_task.cancel()
            try:
                await self._pump_task
            except asyncio.CancelledError:
                pass
        self._writer.close()
        try:
            await self._writer.wait_closed()
        except (ConnectionError, OSError):
            pass

    # ------------------------------------------------------------------ the dialplan's later sessions

    def _next_session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: str,
                      script: str, args: tuple[str, ...], context: str, extension: str, priority: int,
                      dead: bool) -> None:
        """The same channel, a new FastAGI session: variables, SHARED, AstDB and the clock go on."""
        self._reader, self._writer = reader, writer
        self._kernel, self._stdio = bytearray(), bytearray()
        self._eof, self._write_failed = False, False
        self._arrived = asyncio.Event()
        self._pump_task = None
        self.request, self.env_script, self.env_args = request, script, args
        self.env_context, self.env_extension, self.env_priority = context, extension, priority
        self.agistatus = "SUCCESS"
        self.dead = dead  # a hangup handler's session starts on a dead channel (e2): no HANGUP line
        self.record = CallRecord(lines=[], commands=[], prompts_played=[], digits_sent=[], dials=[],
                                 variables={}, hung_up_by=None, closed_by=None, violations=[], duration_ms=0,
                                 uniqueid=self.uniqueid, channel=self.channel)

    def _expand_db(self) -> tuple[str, str] | None:
        cont = self.script.continuation
        if cont is None or cont.unsettled is None:
            return None
        key, value = cont.unsettled
        return self._substitute(key), self._substitute(value)

    # ------------------------------------------------------------------ dispatch

    async def _execute(self, raw: bytes) -> None:
        if b"\0" in raw:
            self._violation("NUL byte in a command line: Asterisk ignores the rest of the line")
            raw = raw.split(b"\0", 1)[0]
        text = raw.decode("utf-8", "surrogateescape")
        self.record.lines.append(("<<", self.now_ms, text))
        self.record.commands.append(text)
        if "\r" in text:
            self._violation(
                "carriage return in a command line: Asterisk keeps it as part of a word"
            )
        argv = parse_args(text)
        command = _find_command(argv)
        if command is None:
            self._violation(f"unknown command: {text!r}")
            await self._send(REPLY_UNKNOWN)
            return
        if self.dead and not command.dead_ok:
            await self._send(REPLY_DEAD)
            return
        handler = getattr(self, command.handler)
        try:
            await handler(argv, text)
        except _ShowUsage:
            self._violation(f"wrong arguments, Asterisk sent usage: {text!r}")
            await self._send(USAGE_FIRST, *_USAGE[command.words].split("\n"), USAGE_LAST)

    async def _cmd_unmodelled(self, argv: list[str], text: str) -> None:
        self._violation(f"not modelled by the fake (the real Asterisk knows it): {text!r}")
        await self._send(REPLY_UNKNOWN)

    # ------------------------------------------------------------------ simple commands

    async def _cmd_answer(self, argv: list[str], text: str) -> None:
        if self.state == _STATE_UP:
            await self._send("200 result=0")
            return
        if await self._answer() == "hangup":
            self._failed()
            await self._send("200 result=-1")
            return
        await self._send("200 result=0")

    async def _answer(self) -> str:
        """ast_answer(): the channel is up at once, then waits up to 500 ms for media."""
        self.state = _STATE_UP
        self.answered_us = self.now_us
        return await self._run(self.script.answer_ms * 1000, interruptible=False)

    async def _cmd_channel_status(self, argv: list[str], text: str) -> None:
        if len(argv) == 2:
            await self._send(f"200 result={self.state}")
        elif len(argv) == 3:
            found = argv[2].casefold() == self.channel.casefold()
            await self._send(f"200 result={self.state if found else -1}")
        else:
            raise _ShowUsage

    async def _cmd_database_del(self, argv: list[str], text: str) -> None:
        if len(argv) != 4:
            raise _ShowUsage
        existed = self.database.pop((argv[2], argv[3]), None) is not None
        await self._send(f"200 result={1 if existed else 0}")

    async def _cmd_database_deltree(self, argv: list[str], text: str) -> None:
        if len(argv) not in (3, 4):
            raise _ShowUsage
        prefix = argv[3] if len(argv) == 4 else None
        doomed = [
            key
            for key in self.database
            if key[0] == argv[2] and (prefix is None or key[1].startswith(prefix))
        ]
        for key in doomed:
            del self.database[key]
        # res_agi.c prints '0' when something was deleted (sic).
        await self._send(f"200 result={0 if doomed else 1}")

    async def _cmd_database_get(self, argv: list[str], text: str) -> None:
        if len(argv) != 4:
            raise _ShowUsage
        value = self.database.get((argv[2], argv[3]))
        await self._send("200 result=0" if value is None else f"200 result=1 ({value})")

    async def _cmd_database_put(self, argv: list[str], text: str) -> None:
        if len(argv) != 5:
            raise _ShowUsage
        self.database[(argv[2], argv[3])] = argv[4]
        await self._send("200 result=1")

    async def _cmd_get_variable(self, argv: list[str], text: str) -> None:
        if len(argv) != 3:
            raise _ShowUsage
        name = argv[2]
        value = self._read_function(name) if name.endswith(")") else self._get_variable(name)
        await self._send("200 result=0" if value is None else f"200 result=1 ({value})")

    async def _cmd_get_full_variable(self, argv: list[str], text: str) -> None:
        if len(argv) not in (4, 5):
            raise _ShowUsage
        if len(argv) == 5 and argv[4].casefold() != self.channel.casefold():
            await self._send("200 result=0")
            return
        await self._send(f"200 result=1 ({self._substitute(argv[3])})")

    async def _cmd_set_variable(self, argv: list[str], text: str) -> None:
        if len(argv) != 4:
            raise _ShowUsage
        self._set_variable(argv[2], argv[3])
        await self._send("200 result=1")

    async def _cmd_set_callerid(self, argv: list[str], text: str) -> None:
        if len(argv) > 2:
            name, number = _callerid_parse(argv[2])
            self.caller_num = _shrink_phone_number(number) if number is not None else ""
            self.caller_name = name if name is not None else ""
        await self._send("200 result=1")

    async def _cmd_set_dialplan(self, argv: list[str], text: str) -> None:
        if len(argv) != 3:
            raise _ShowUsage
        if argv[1].casefold() == "priority" and _scan_int(argv[2]) is None:
            raise _ShowUsage  # no labels known to the fake
        await self._send("200 result=0")

    async def _cmd_set_music(self, argv: list[str], text: str) -> None:
        if len(argv) < 3:
            raise _ShowUsage
        await self._send("200 result=0")

    async def _cmd_verbose(self, argv: list[str], text: str) -> None:
        if len(argv) < 2:
            raise _ShowUsage
        await self._send("200 result=1")

    async def _cmd_noop(self, argv: list[str], text: str) -> None:
        await self._send("200 result=0")

    async def _cmd_hangup(self, argv: list[str], text: str) -> None:
        if len(argv) > 2:
            raise _ShowUsage
        if len(argv) == 2 and argv[1].casefold() != self.channel.casefold():
            await self._send("200 result=-1")
            return
        self._server_hangs_up()
        await self._send("200 result=1")

    async def _cmd_receive_char(self, argv: list[str], text: str) -> None:
        if len(argv) != 3:
            raise _ShowUsage
        timeout = _atoi(argv[2])
        # A Local channel carries no text: ast_recvchar() waits out the timeout, then -1 (b1).
        if (
            await self._run(timeout * 1000 if timeout > 0 else None, interruptible=False)
            == "stalled"
        ):
            raise _GiveUp(f"{text!r} waits forever (timeout 0) and nobody hangs up")
        self._failed()
        await self._send("200 result=-1 (hangup)")

    # ------------------------------------------------------------------ audio and DTMF

    async def _cmd_stream_file(self, argv: list[str], text: str) -> None:
        if len(argv) not in (4, 5):
            raise _ShowUsage
        offset = 0
        if len(argv) == 5:
            scanned = _scan_int(argv[4])
            if scanned is None:
                raise _ShowUsage
            offset = scanned
        name = argv[2]
        if name in self.script.missing_sounds:
            self._failed()
            await self._send(f"200 result=-1 endpos={offset}")
            return
        length = self._sound_samples(name)
        begin = max(0, min(offset, length))
        self.record.prompts_played.append(name)
        start = self.now_us
        outcome = await self._run((length - begin) * _US_PER_SAMPLE, interruptible=True)
        if outcome == "aborted":
            self._aborted(text)
            return
        if outcome == "hangup":
            self.variables["PLAYBACKSTATUS"] = "FAILED"
            self._failed()
            played = (self.now_us - start) // _US_PER_SAMPLE
            await self._send(f"200 result=-1 endpos={begin + played}")
            return
        self.variables["PLAYBACKSTATUS"] = "SUCCESS"
        await self._send(f"200 result=0 endpos={length}")

    def _next_keys(self) -> str:
        keys = self._digits.popleft() if self._digits else ""
        self.record.digits_sent.append(keys)
        if keys:
            self._note(f"caller presses {keys!r}")
        return keys

    async def _cmd_get_data(self, argv: list[str], text: str) -> None:
        if len(argv) < 3:
            raise _ShowUsage
        timeout = _atoi(argv[3]) if len(argv) >= 4 else 0
        max_digits = _atoi(argv[4]) if len(argv) >= 5 else 1024
        prompt = argv[2]
        if prompt and prompt in self.script.missing_sounds:
            await self._send("200 result=-1")  # ast_streamfile() failed; RESULT_SUCCESS
            return
        prompt_us = 0
        if prompt:
            self.record.prompts_played.append(prompt)
            prompt_us = self._sound_us(prompt)
        if max_digits <= 0:
            await self._send("200 result=-1")  # ast_readstring_full(): "if (!len) return -1"
            return
        # app.c ast_app_getdata_full(): 2 s between digits and 6 s for the first by default.
        first: int | None
        between: int | None
        if timeout > 0:
            first = between = timeout
        elif timeout < 0:
            first = between = None
        else:
            first, between = 6000, 2000
        keys = self._next_keys()
        wait_ms, data, timed_out = _read_string(
            keys, max_digits, first, between, self.script.dtmf_ms
        )
        duration = None if wait_ms is None else prompt_us + wait_ms * 1000
        outcome = await self._run(duration, interruptible=True)
        if outcome == "aborted":
            self._aborted(text)
        elif outcome == "hangup":
            await self._send("200 result=-1")
        elif outcome == "stalled":
            raise _GiveUp(f"{text!r} waits forever and the server sent nothing more")
        elif timed_out:
            await self._send(f"200 result={data} (timeout)")
        else:
            await self._send(f"200 result={data}")

    async def _cmd_wait_for_digit(self, argv: list[str], text: str) -> None:
        if len(argv) != 4:
            raise _ShowUsage
        timeout = _scan_int(argv[3])
        if timeout is None:
            raise _ShowUsage
        duration_ms, result = self._wait_digit(timeout, edigits=None)
        outcome = await self._run(
            None if duration_ms is None else duration_ms * 1000, interruptible=True
        )
        if outcome == "aborted":
            self._aborted(text)
        elif outcome == "hangup":
            self._failed()
            await self._send("200 result=-1")
        elif outcome == "stalled":
            raise _GiveUp(f"{text!r} waits forever and the server sent nothing more")
        else:
            await self._send(f"200 result={result}")

    def _wait_digit(self, timeout_ms: int, edigits: str | None) -> tuple[int | None, int]:
        """ast_waitfordigit_full(): (virtual ms it takes or None = forever, result)."""
        keys = self._next_keys()
        if keys and (timeout_ms < 0 or self.script.dtmf_ms <= timeout_ms):
            key = keys[0]
            if edigits is not None and key not in edigits:
                return self.script.dtmf_ms, 0
            return self.script.dtmf_ms, ord(key)
        if timeout_ms < 0:
            return None, 0
        return timeout_ms, 0

    async def _cmd_get_option(self, argv: list[str], text: str) -> None:
        if len(argv) not in (4, 5):
            raise _ShowUsage
        edigits = argv[3]
        timeout = _atoi(argv[4]) if len(argv) == 5 else 5000  # pbx dtimeoutms default
        name = argv[2]
        if name in self.script.missing_sounds:
            self._failed()
            await self._send("200 result=-1 endpos=0")
            return
        length = self._sound_samples(name)
        self.record.prompts_played.append(name)
        start = self.now_us
        outcome = await self._run(length * _US_PER_SAMPLE, interruptible=True)
        if outcome == "aborted":
            self._aborted(text)
            return
        if outcome == "hangup":
            self._failed()
            await self._send(f"200 result=-1 endpos={(self.now_us - start) // _US_PER_SAMPLE}")
            return
        duration_ms, result = self._wait_digit(timeout, edigits)
        outcome = await self._run(
            None if duration_ms is None else duration_ms * 1000, interruptible=True
        )
        if outcome == "aborted":
            self._aborted(text)
            return
        if outcome == "stalled":
            raise _GiveUp(f"{text!r} waits forever and the server sent nothing more")
        # A hang-up while waiting gives -1, which is no escape digit, so res_agi.c reports 0.
        await self._send(f"200 result={0 if outcome == 'hangup' else result} endpos={length}")

    async def _cmd_say(self, argv: list[str], text: str) -> None:
        # The say.c sound sequences are approximated: digits and letters file by file,
        # a number as one entry lasting a file per digit, a date or time as five files.
        kind = argv[1].casefold()
        value = _scan_int(argv[2]) if len(argv) > 2 else None
        one_file = self.script.prompt_ms * 1000
        if kind == "number":
            if len(argv) not in (4, 5) or value is None:
                raise _ShowUsage
            sounds = [f"say-number:{value}"]
            duration = one_file * len(str(abs(value)))
        elif kind in ("digits", "alpha", "phonetic"):
            if kind == "digits" and (len(argv) != 4 or value is None):
                raise _ShowUsage
            if kind == "phonetic" and len(argv) != 4:
                raise _ShowUsage
            if kind == "alpha" and (
                len(argv) not in (4, 5) or (len(argv) == 5 and argv[4][:1].lower() not in "alnu")
            ):
                raise _ShowUsage
            sounds = [
                f"digits/{c}" if c.isdigit() else f"letters/{c.lower()}"
                for c in argv[2]
                if c.isalnum()
            ]
            duration = sum(self._sound_us(name) for name in sounds)
        else:  # date, time, datetime
            if kind == "datetime":
                if len(argv) < 4 or not re.fullmatch(r"\s*-?\d+(\.\d*)?\s*", argv[2]):
                    raise _ShowUsage  # ast_get_time_t() failed
            elif len(argv) != 4 or value is None:
                raise _ShowUsage
            sounds = [f"say-{kind}:{argv[2].strip()}"]
            duration = one_file * 5
        self.record.prompts_played.extend(sounds)
        # SAY DATE/TIME/DATETIME do not pass the AGI socket to the say functions.
        interruptible = kind in ("number", "digits", "alpha", "phonetic")
        outcome = await self._run(duration, interruptible=interruptible)
        if outcome == "aborted":
            self._aborted(text)
        elif outcome == "hangup":
            self._failed()
            await self._send("200 result=-1")
        else:
            await self._send("200 result=0")

    # ------------------------------------------------------------------ EXEC

    async def _cmd_exec(self, argv: list[str], text: str) -> None:
        if len(argv) < 2:
            raise _ShowUsage
        app = argv[1].casefold()
        data = argv[2] if len(argv) >= 3 else ""
        if _is_true(self._get_variable("AGIEXECFULL")):
            data = self._substitute(data)
        runner = {
            "playback": self._app_playback,
            "dial": self._app_dial,
            "set": self._app_set,
            "wait": self._app_wait,
            "noop": self._app_noop,
            "verbose": self._app_noop,
            "answer": self._app_answer,
            "hangup": self._app_hangup,
        }.get(app)
        if runner is None:
            self._note(f"application {argv[1]!r} is unknown to the fake, as to Asterisk: -2")
            await self._send("200 result=-2")
            return
        if self.dead and app not in ("set", "noop", "verbose"):
            await self._send("200 result=-1")  # the application finds the channel hung up
            return
        result = await runner(data)
        await self._send(f"200 result={result}")

    async def _app_noop(self, data: str) -> int:
        return 0

    async def _app_set(self, data: str) -> int:
        name, sep, value = data.partition("=")
        if sep and name:
            self._set_variable(name.strip(), value)
        return 0

    async def _app_answer(self, data: str) -> int:
        if self.state == _STATE_UP:
            return 0
        return -1 if await self._answer() == "hangup" else 0

    async def _app_hangup(self, data: str) -> int:
        self._server_hangs_up()
        return -1

    async def _app_wait(self, data: str) -> int:
        try:
            seconds = float(data) if data.strip() else 0.0
        except ValueError:
            seconds = 0.0
        outcome = await self._run(int(seconds * 1_000_000), interruptible=False)
        return -1 if outcome == "hangup" else 0

    async def _app_playback(self, data: str) -> int:
        files, _, options = data.partition(",")
        answering = self.state != _STATE_UP and "noanswer" not in options
        if answering and await self._answer() == "hangup":
            return -1
        failed = False
        for name in files.split("&"):
            if not name:
                continue
            if name in self.script.missing_sounds:
                self._note(f"Playback failed for {name!r} (no such file); continues")
                failed = True
                continue
            self.record.prompts_played.append(name)
            if await self._run(self._sound_us(name), interruptible=False) == "hangup":
                return -1
        self.variables["PLAYBACKSTATUS"] = "FAILED" if failed else "SUCCESS"
        return 0

    async def _app_dial(self, data: str) -> int:
        spec = _parse_dial(data)
        script = self._dials.popleft() if self._dials else DialScript()
        for name in (
            "DIALSTATUS",
            "DIALEDPEERNUMBER",
            "DIALEDPEERNAME",
            "ANSWEREDTIME",
            "ANSWEREDTIME_MS",
            "DIALEDTIME",
            "DIALEDTIME_MS",
            "RINGTIME",
            "RINGTIME_MS",
            "PROGRESSTIME",
            "PROGRESSTIME_MS",
        ):
            self.variables[name] = ""  # app_dial.c blanks them before dialling
        if spec.peers and "/" in spec.peers[0]:
            plan = _plan_dial(spec, script, self.now_us, self._warning_sounds)
        else:
            self._note(f"Dial argument takes format (technology/resource): {spec.dial_string!r}")
            plan = _DialPlan.unavailable(self.now_us)
        hangup_at = self._pending_hangup_us()
        if hangup_at is not None and (plan.end_us is None or hangup_at < plan.end_us):
            plan.cut_by_caller(hangup_at)
        peer_seq = next(self._peer_seq)
        self._live_dial = _LiveDial(self, spec, script, plan, peer_seq, data)
        try:
            outcome = await self._dial_wait(plan)
        finally:
            self._live_dial = None
        if outcome == "stalled":
            raise _GiveUp(f"EXEC Dial {data!r} rings forever (no timeout) and nobody hangs up")
        if plan.answered_us is not None:
            self.record.lines.append(("##", plan.answered_us // 1000, "callee answers"))
        self._note(f"Dial ends: {plan.status}, {plan.ended_by or 'no answer'}")
        if plan.caller_hung_up:
            self._caller_hangs_up(self.now_us)

        if plan.answered_us is not None and self.state != _STATE_UP:
            self.state = _STATE_UP  # Dial answers the caller when the callee answers
            self.answered_us = plan.answered_us
        if plan.answered_us is not None and "U" in spec.options:
            self._run_stamp(spec.options["U"], plan.answered_us)
        if self._pending_end_stamp:
            # [ivr-stamp-end]: app_dial hangs the callee up when the bridge ends, before Dial returns.
            self._pending_end_stamp = False
            self.shared["IVR_ENDED"] = _strftime(self.epoch(plan.answered_us + plan.talk_us if plan.answered_us
                                                            is not None else self.now_us), "%s.%3q", "")
        if plan.answered_us is not None:
            self.bridge_ended_us = self.now_us
        status = plan.status
        self.variables["DIALSTATUS"] = status
        peer = ""
        if status == "ANSWER":
            assert plan.answered_us is not None and self.answered_us is not None
            end = self.now_us
            peer = _peer_name(spec.peers[0], peer_seq)
            self._set_duration("ANSWEREDTIME", end - self.answered_us)
            self._set_duration("DIALEDTIME", end - self.created_us)
            self.variables["DIALEDPEERNAME"] = peer
            self.variables["DIALEDPEERNUMBER"] = spec.peers[0].partition("/")[2]
            self.hangupcause = 16
        elif status == "NOANSWER":
            self.variables["RINGTIME"] = self.variables["RINGTIME_MS"] = "0"
        elif status == "CHANUNAVAIL":
            self.hangupcause = 1
        self.cdr_end_us = plan.cdr_end_us
        self.cdr_disposition = {
            "ANSWER": "ANSWERED",
            "BUSY": "BUSY",
            "NOANSWER": "NO ANSWER",
            "CANCEL": "NO ANSWER",
        }.get(status, "FAILED")
        if plan.caller_hung_up:
            result = -1
        elif status == "ANSWER":
            result = 0 if "g" in spec.options else -1  # b4a vs b4i
        else:
            result = 0
        self.record.dials.append(
            {
                "dial_string": spec.dial_string,
                "timeout_s": spec.timeout_s,
                "options": dict(spec.options),
                "limit_ms": spec.limit_ms,
                "warning_ms": spec.warning_ms,
                "repeat_ms": spec.repeat_ms,
                "status": status,
                "started_at_ms": plan.start_us // 1000,
                "answered_at_ms": None if plan.answered_us is None else plan.answered_us // 1000,
                "ended_at_ms": self.now_ms,
                "talk_ms": plan.talk_us // 1000,
                "ended_by": plan.ended_by,
                "warnings_played": [list(w) for w in plan.warnings],
                "peer": peer,
                "result": result,
            }
        )
        return result

    def _warning_sounds(self, remaining_ms: int) -> tuple[tuple[str, ...], int]:
        """The L() warning, as bridge_builtin_interval_features.c limits_interval_playback()
        plays it: ``LIMIT_WARNING_FILE`` when set and not "timeleft" (features.c
        ast_bridge_timelimit(), read when Dial starts), else "you have [N minutes] [N seconds]"."""
        file = self.variables.get("LIMIT_WARNING_FILE", "")
        if file and file.casefold() != "timeleft":
            # ast_stream_and_wait() -> ast_streamfile(): one file name, opened as is. Unlike
            # app_playback.c it does not split "a&b", so a list names a file that does not exist.
            if file in self.script.missing_sounds or "&" in file:
                self._note(f"Unable to open {file} (format ulaw): No such file or directory")
                return (), 0
            return (file,), self._sound_us(file)
        remaining = remaining_ms // 1000
        if remaining <= 0:
            return (), 0
        minutes, seconds = (
            (remaining // 60, remaining % 60) if remaining // 60 > 1 else (0, remaining)
        )
        sounds = ["vm-youhave"]
        if minutes:
            sounds += [f"digits/{minutes}", "queue-minutes"]
        if seconds:
            sounds += [f"digits/{seconds}", "queue-seconds"]
        return tuple(sounds), sum(self._sound_us(s) for s in sounds)

    def _run_stamp(self, gosub: str, answered_us: int) -> None:
        """Dial U(context^arg1^...) runs on the callee at answer; only [ivr-stamp] is known."""
        context, *args = gosub.split("^")
        if context != "ivr-stamp" or not self.script.stamp_context:
            self._note(f"Gosub {context!r} not found: no stamp")
            return
        if args and args[0].casefold() == self.channel.casefold():
            self.shared["IVR_ANSWERED"] = _strftime(self.epoch(answered_us), "%s.%3q", "")
            if self.script.stamp_end:
                self._pending_end_stamp = True

    def _set_duration(self, base: str, duration_us: int) -> None:
        ms = duration_us // 1000
        self.variables[base] = str(ms // 1000)
        self.variables[f"{base}_MS"] = str(ms)

    # ------------------------------------------------------------------ AMI

    async def _dial_wait(self, plan: _DialPlan) -> str:
        """Let the Dial run; with an AMI and real time, an AMI Hangup cuts it (e4, e5).

        Returns "done" or "stalled" as ``_run`` does."""
        duration = None if plan.end_us is None else plan.end_us - self.now_us
        scale = self.script.time_scale
        if self.ami is None or scale <= 0:
            return await self._run(duration, interruptible=False)
        loop = asyncio.get_running_loop()
        start_us, t0 = self.now_us, loop.time()
        self._clock_base = (t0, start_us)
        try:
            if self._cut is None:
                timeout = self.script.idle_timeout_s if duration is None else duration / 1_000_000 * scale
                try:
                    await asyncio.wait_for(self._cut_event.wait(), timeout)
                except TimeoutError:
                    if plan.end_us is None:
                        return "stalled"
                    self.now_us = plan.end_us
                    return "done"
            at = start_us + int((loop.time() - t0) / scale * 1_000_000)
        finally:
            self._clock_base = None
        if plan.end_us is not None:
            at = min(at, plan.end_us)
        assert self._cut is not None
        kind, cause = self._cut
        self._cut = None
        self._cut_event.clear()
        self.now_us = at
        if kind == "self":
            # As a caller hang-up: Dial returns -1, then the bare HANGUP line (e4).
            self._note("AMI Hangup of the AGI channel ends the Dial")
            self._hang_up("ami")
            plan.cut_by_caller(at)
            if plan.ended_by == "caller":
                plan.ended_by = "ami"
        elif plan.answered_us is not None and at >= plan.answered_us:
            # The callee's leg hung up: Dial returns (0 with g), the caller stays up (e5).
            self._note("AMI Hangup of the callee ends the Dial")
            plan.end_us = plan.cdr_end_us = at
            plan.talk_us = at - plan.answered_us
            plan.ended_by = "ami"
            kept = [i for i, (begin, _) in enumerate(plan.warning_spans) if begin < at]
            plan.warnings = [plan.warnings[i] for i in kept]
            plan.warning_spans = [plan.warning_spans[i] for i in kept]
        else:
            # Not recorded: a ringing callee hung up with cause 16 is no answer (app_dial.c
            # handle_cause() counts only busy, congestion and unavailable).
            self._note("AMI Hangup of the ringing callee ends the Dial (not recorded)")
            plan.status = "NOANSWER"
            plan.answered_us = None
            plan.talk_us = 0
            plan.end_us = plan.cdr_end_us = at
            plan.ended_by = "ami"
            plan.warnings, plan.warning_spans = [], []
        self.hangupcause = cause
        return "done"

    def _live_us(self) -> int:
        """The virtual clock now, also while a Dial waits in real time."""
        if self._clock_base is None:
            return self.now_us
        t0, base = self._clock_base
        scale = self.script.time_scale or 1.0
        return base + int((asyncio.get_running_loop().time() - t0) / scale * 1_000_000)

    def ami_channels(self) -> list[dict[str, str]]:
        """The call's channels as CoreShowChannel fields (e4): the AGI channel, and during
        a Dial the callee's leg (a Local peer's ;1 and ;2)."""
        now = self._live_us()
        s = self.script
        linkedid = s.linkedid or self.uniqueid
        dial = self._live_dial
        answered = dial is not None and dial.plan.answered_us is not None and dial.plan.answered_us <= now
        up = self.state == _STATE_UP or answered
        if dial is not None:
            app, app_data = "Dial", dial.data
        else:
            app = "AGI"
            app_data = ",".join([self.request, *s.args])
        own = {
            "Channel": self.channel,
            "ChannelState": str(_STATE_UP if up else self.state),
            "ChannelStateDesc": _STATE_NAMES.get(_STATE_UP if up else self.state, "Unknown"),
            "CallerIDNum": self.caller_num or "<unknown>",
            "CallerIDName": self.caller_name or "<unknown>",
            "ConnectedLineNum": s.connected_num or "<unknown>",
            "ConnectedLineName": "<unknown>",
            "Language": self.language,
            "AccountCode": "",
            "Context": s.context,
            "Exten": s.extension,
            "Priority": str(s.priority),
            "Uniqueid": self.uniqueid,
            "Linkedid": linkedid,
            "Application": app,
            "ApplicationData": app_data,
            "Duration": _hms(now - self.created_us),
            "BridgeId": dial.bridge_id if dial is not None and answered else "",
        }
        channels = [own]
        if dial is not None:
            channels.extend(dial.callee_channels(now, answered, linkedid))
        return channels

    def ami_hangup(self, name: str, cause: int) -> bool:
        if name.casefold() == self.channel.casefold():
            kind = "self"
        elif self._live_dial is not None and name in self._live_dial.callee_names:
            kind = "callee"
        else:
            return False
        if kind == "self" and self._live_dial is None:
            if not self.soft_hungup:
                self._ami_hangup_pending = True  # taken when the running command ends
                self.hangupcause = cause
                self._arrived.set()
            return True
        if self._cut is None:
            self._cut = (kind, cause)
            self._cut_event.set()
        return True

    def ami_getvar(self, name: str, variable: str) -> str | None:
        if name.casefold() != self.channel.casefold():
            return "" if self._live_dial is not None and name in self._live_dial.callee_names else None
        return self._read_function(variable) if variable.endswith(")") else self._get_variable(variable)

    def ami_setvar(self, name: str, variable: str, value: str) -> bool:
        if name.casefold() != self.channel.casefold():
            return self._live_dial is not None and name in self._live_dial.callee_names
        self._set_variable(variable, value)
        return True

    # ------------------------------------------------------------------ variables and functions

    def _get_variable(self, name: str) -> str | None:
        """pbx_retrieve_variable(): built-ins first, then channel variables."""
        builtins = {
            "EXTEN": self.script.extension,
            "CONTEXT": self.script.context,
            "PRIORITY": str(self.script.priority),
            "CHANNEL": self.channel,
            "UNIQUEID": self.uniqueid,
            "HANGUPCAUSE": str(self.hangupcause),
        }
        if name in builtins:
            return builtins[name]
        if name in self.variables:
            return self.variables[name]
        if name == "EPOCH":
            return str(int(self.epoch(self.now_us)))
        return None

    def _set_variable(self, name: str, value: str) -> None:
        if name.endswith(")"):
            self._write_function(name, value)
            return
        self.variables[name.lstrip("_") if name.startswith("_") else name] = value

    def _read_function(self, expression: str) -> str | None:
        """ast_func_read(); None when the function does not exist or fails."""
        fname, _, rest = expression.partition("(")
        args = rest.removesuffix(")")
        fname = fname.strip().upper()
        if fname == "CALLERID":
            item = args.strip().lower()
            return {
                "num": self.caller_num,
                "number": self.caller_num,
                "name": self.caller_name,
                "all": f'"{self.caller_name}" <{self.caller_num}>',
                "pres": _CALLINGPRES_NAMES.get(
                    self.script.callingpres, str(self.script.callingpres)
                ),
            }.get(item)
        if fname == "CDR":
            field_name, _, options = args.partition(",")
            return self._cdr(field_name.strip().lower(), options)
        if fname == "SHARED":
            var, _, chan = args.partition(",")
            if chan and chan.casefold() != self.channel.casefold():
                return None
            return self.shared.get(var, "")
        if fname == "STRFTIME":
            parts = args.split(",", 2) + ["", ""]
            when = self.epoch(self.now_us) if not parts[0].strip() else Decimal(parts[0].strip())
            return _strftime(when, parts[2] or "%c", parts[1].strip())
        if fname == "CHANNEL":
            item = args.strip().lower()
            return {
                "state": _STATE_NAMES.get(self.state, str(self.state)),
                "name": self.channel,
                "language": self.language,
                "uniqueid": self.uniqueid,
                "context": self.script.context,
                "exten": self.script.extension,
            }.get(item)
        if fname == "HANGUPCAUSE_KEYS":
            return ""
        return None

    def _write_function(self, expression: str, value: str) -> None:
        fname, _, rest = expression.partition("(")
        args = rest[:-1]
        fname = fname.strip().upper()
        if fname == "SHARED":
            var, _, chan = args.partition(",")
            if not chan or chan.casefold() == self.channel.casefold():
                self.shared[var] = value
        elif fname == "CALLERID":
            item = args.strip().lower()
            if item in ("num", "number"):
                self.caller_num = value
            elif item == "name":
                self.caller_name = value
            elif item == "all":
                name, number = _callerid_parse(value)
                self.caller_name, self.caller_num = name or "", number or ""
        elif fname == "CHANNEL" and args.strip().lower() == "language":
            self.language = value
        elif fname == "CHANNEL" and args.strip().lower() == "hangup_handler_push":
            self.hangup_handlers.append(value.split(",", 1)[0])  # e2: pushes "ctx,s,1"
        elif fname == "CDR" and args.strip().lower() == "userfield":
            self.variables["CDR(userfield)"] = value
        else:
            self._note(f"function {expression!r} not modelled: write ignored")

    def _cdr(self, name: str, options: str) -> str:
        unix = "u" in options
        end = self.cdr_end_us if self.cdr_end_us is not None else self.now_us

        def stamp(t_us: int | None) -> str:
            if t_us is None:
                return ""
            epoch = self.epoch(t_us)
            if unix:
                return str(epoch.quantize(Decimal("0.000001"), rounding=ROUND_FLOOR))
            return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(int(epoch)))

        def span(us: int) -> str:
            us = max(0, us)
            return (
                f"{us // 1_000_000}.{us % 1_000_000:06d}"
                if "f" in options
                else str(us // 1_000_000)
            )

        if name == "start":
            return stamp(self.created_us)
        if name == "answer":
            return stamp(self.after_bridge_cdr_us if self.after_bridge_cdr_us is not None else self.answered_us)
        if name == "end":
            return stamp(self.cdr_end_us)
        if name == "duration":
            return span(end - self.created_us)
        if name == "billsec":
            return span(0 if self.answered_us is None else end - self.answered_us)
        if name == "disposition":
            if self.cdr_disposition is not None:
                return self.cdr_disposition
            return "ANSWERED" if self.answered_us is not None else "NO ANSWER"
        return {
            "uniqueid": self.uniqueid,
            "channel": self.channel,
            "src": self.caller_num,
            "dst": self.script.extension,
            "dcontext": self.script.context,
            "clid": f'"{self.caller_name}" <{self.caller_num}>',
            "userfield": self.variables.get("CDR(userfield)", ""),
        }.get(name, "")

    def _substitute(self, text: str) -> str:
        """pbx_substitute_variables_helper(): ${VAR}, ${FUNC(args)}, ${VAR:offset:length}."""
        out: list[str] = []
        i = 0
        while i < len(text):
            start = text.find("${", i)
            if start < 0:
                out.append(text[i:])
                break
            out.append(text[i:start])
            depth, j = 1, start + 2
            while j < len(text) and depth:
                if text[j] == "{":
                    depth += 1
                elif text[j] == "}":
                    depth -= 1
                j += 1
            if depth:
                out.append(text[start:])  # "Error in extension logic (missing '}')"
                break
            inner = text[start + 2 : j - 1]
            if "${" in inner:
                inner = self._substitute(inner)
            out.append(self._expand(inner))
            i = j
        return "".join(out)

    def _expand(self, name: str) -> str:
        offset = length = None
        depth = 0
        for pos, ch in enumerate(name):
            depth += {"(": 1, ")": -1}.get(ch, 0)
            if ch == ":" and depth == 0:
                parts = name[pos + 1 :].split(":")
                offset = _atoi(parts[0])
                length = _atoi(parts[1]) if len(parts) > 1 and parts[1] else None
                name = name[:pos]
                break
        value = (
            self._read_function(name) if name.endswith(")") else self._get_variable(name)
        ) or ""
        if offset is None:
            return value
        if offset < 0:
            offset = max(0, len(value) + offset)
        value = value[offset:]
        if length is None:
            return value
        return value[:length]  # a negative length leaves that many characters off the end


# --------------------------------------------------------------------------- helpers


def _read_string(
    keys: str, max_digits: int, first: int | None, between: int | None, dtmf_ms: int
) -> tuple[int | None, str, bool]:
    """ast_readstring_full() after the prompt, with the caller pressing `keys`.

    Returns (virtual ms it takes or None for forever, the digits, timed out?).
    '#' ends the input (and alone gives an empty result); max_digits ends it.
    """
    elapsed = 0
    data = ""
    limit = first
    for key in keys:
        if limit is not None and dtmf_ms > limit:
            return elapsed + limit, data, True
        elapsed += dtmf_ms
        if key == "#":
            return elapsed, data, False
        data += key
        if len(data) >= max_digits:
            return elapsed, data, False
        limit = between
    if limit is None:
        return None, data, True
    return elapsed + limit, data, True


@dataclass
class _DialPlan:
    """When things happen during one Dial (virtual µs)."""

    start_us: int
    status: str
    end_us: int | None  # when Dial returns (None: never)
    answered_us: int | None = None
    cdr_end_us: int | None = None  # the callee leg's end (CDR end), without warning overrun
    talk_us: int = 0
    ended_by: str | None = None  # "callee" | "limit" | "caller" | "timeout"
    warnings: list[tuple[str, ...]] = field(default_factory=list)
    warning_spans: list[tuple[int, int]] = field(default_factory=list)
    caller_hung_up: bool = False

    @classmethod
    def unavailable(cls, now_us: int) -> _DialPlan:
        return cls(start_us=now_us, status="CHANUNAVAIL", end_us=now_us, cdr_end_us=now_us)

    def cut_by_caller(self, at_us: int) -> None:
        """The caller hangs up at `at_us`, before Dial would have returned."""
        self.caller_hung_up = True
        self.end_us = at_us
        if self.answered_us is None or at_us < self.answered_us:
            self.status = "CANCEL"
            self.answered_us = None
            self.talk_us = 0
            self.cdr_end_us = at_us
            self.ended_by = "caller"
            self.warnings, self.warning_spans = [], []
            return
        kept = [i for i, (begin, _) in enumerate(self.warning_spans) if begin < at_us]
        self.warnings = [self.warnings[i] for i in kept]
        self.warning_spans = [self.warning_spans[i] for i in kept]
        if self.cdr_end_us is None or at_us < self.cdr_end_us:
            # Still talking: the caller ends the call (else a warning was still playing).
            self.talk_us = at_us - self.answered_us
            self.cdr_end_us = at_us
            self.ended_by = "caller"


class _LiveDial:
    """A Dial while it runs, as the AMI sees it: the callee's channels and their bridge."""

    def __init__(self, call: _Call, spec: _DialSpec, script: DialScript, plan: _DialPlan, seq: int,
                 data: str) -> None:
        self.plan = plan
        self.data = data
        self.started_us = call.now_us
        self.bridge_id = script.bridge_id or str(uuid.uuid4())
        self.call = call
        self.script = script
        peer = spec.peers[0] if spec.peers else ""
        tech, _, resource = peer.partition("/")
        self.local = tech.casefold() == "local"
        target = resource.split("/", 1)[0]
        self.number, _, self.context = target.partition("@")
        leg = _peer_name(peer, seq) if "/" in peer else ""
        self.callee_names = [leg] + ([leg[:-1] + "2"] if self.local and leg else [])
        epoch = int(call.epoch(call.now_us))
        tail = call.uniqueid.rpartition(".")[2]
        n = int(tail) if tail.isdigit() else seq
        self.uniqueids = [f"{epoch}.{n + 1}", f"{epoch}.{n + 2}"]

    def callee_channels(self, now_us: int, answered: bool, linkedid: str) -> list[dict[str, str]]:
        call = self.call
        if not self.callee_names or not self.callee_names[0]:
            return []
        state = ("6", "Up") if answered else ("5", "Ringing")
        common = {"Language": call.language, "AccountCode": ""}
        duration = _hms(now_us - self.started_us)
        app = self.script.callee_app or ("Wait", str(self.script.talk_ms // 1000))
        channels = []
        if self.local:
            channels.append({
                "Channel": self.callee_names[1], "ChannelState": state[0], "ChannelStateDesc": state[1],
                "CallerIDNum": call.caller_num or "<unknown>", "CallerIDName": call.caller_name or "<unknown>",
                "ConnectedLineNum": call.script.extension, "ConnectedLineName": "<unknown>", **common,
                "Context": self.context, "Exten": self.number, "Priority": str(self.script.callee_priority),
                "Uniqueid": self.uniqueids[1], "Linkedid": linkedid, "Application": app[0],
                "ApplicationData": app[1], "Duration": duration, "BridgeId": "",
            })
        channels.append({
            "Channel": self.callee_names[0], "ChannelState": state[0], "ChannelStateDesc": state[1],
            "CallerIDNum": call.script.extension, "CallerIDName": "<unknown>",
            "ConnectedLineNum": call.caller_num or "<unknown>", "ConnectedLineName": "<unknown>", **common,
            "Context": self.context if self.local else "", "Exten": "", "Priority": "1",
            "Uniqueid": self.uniqueids[0], "Linkedid": linkedid, "Application": "AppDial",
            "ApplicationData": "(Outgoing Line)", "Duration": duration,
            "BridgeId": self.bridge_id if answered else "",
        })
        return channels


def _hms(us: int) -> str:
    """CoreShowChannel's Duration: HH:MM:SS."""
    seconds = max(0, us) // 1_000_000
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _plan_dial(
    spec: _DialSpec,
    script: DialScript,
    now_us: int,
    warning_sounds: Callable[[int], tuple[tuple[str, ...], int]],
) -> _DialPlan:
    """The Dial as it would go if the caller stays: status, answer, cut, warnings."""
    timeout_us = None if spec.timeout_s is None else int(spec.timeout_s * 1_000_000)
    ring_us = script.ring_ms * 1000
    outcome = script.outcome
    if outcome == "chanunavail":
        return _DialPlan.unavailable(now_us)
    if outcome == "noanswer" or (timeout_us is not None and timeout_us <= ring_us):
        end = None if timeout_us is None else now_us + timeout_us
        return _DialPlan(now_us, "NOANSWER", end, cdr_end_us=end, ended_by="timeout")
    if outcome in ("busy", "congestion"):
        end = now_us + ring_us
        return _DialPlan(now_us, outcome.upper(), end, cdr_end_us=end)
    answered = now_us + ring_us
    cut = answered + script.talk_ms * 1000
    ended_by = "callee"
    if spec.limit_ms is not None and spec.limit_ms * 1000 < script.talk_ms * 1000:
        cut = answered + spec.limit_ms * 1000
        ended_by = "limit"
    plan = _DialPlan(
        now_us,
        "ANSWER",
        cut,
        answered_us=answered,
        cdr_end_us=cut,
        talk_us=cut - answered,
        ended_by=ended_by,
    )
    if spec.limit_ms is not None and spec.warning_ms is not None:
        quitting = answered + spec.limit_ms * 1000
        at = quitting - spec.warning_ms * 1000
        busy_until = answered
        while at < cut:
            if at >= busy_until:  # a warning due while one plays is skipped (b4f: 2 s and 6 s)
                sounds, length = warning_sounds((quitting - at) // 1000)
                if sounds:
                    plan.warnings.append(sounds)
                    plan.warning_spans.append((at, at + length))
                    busy_until = at + length
            if not spec.repeat_ms:
                break
            at += spec.repeat_ms * 1000
        if busy_until > cut:
            plan.end_us = busy_until  # Dial returns when the warning prompt ends (b4f)
    return plan


def _peer_name(peer: str, seq: int) -> str:
    tech, _, resource = peer.partition("/")
    if tech.casefold() == "local":
        return f"Local/{resource.split('/', 1)[0].split('|', 1)[0]}-{seq:08x};1"
    return f"{tech}/{resource}-{seq:08x}"


def _strftime(epoch: Decimal, fmt: str, zone: str) -> str:
    """STRFTIME(): strftime plus %s and %[1-6]q (fractions, truncated) of ast_strftime()."""
    seconds = int(epoch.to_integral_value(rounding=ROUND_FLOOR))
    micros = int((epoch - seconds) * 1_000_000)

    def special(m: re.Match[str]) -> str:
        token = m.group(0)
        if token == "%%":
            return "%%"
        if token == "%s":
            return str(seconds)
        decimals = int(m.group(1) or 3)
        return f"{micros // 10 ** (6 - decimals):0{decimals}d}"

    fmt = re.sub(r"%%|%s|%([1-6])?q", special, fmt)
    if zone and zone.upper() != "UTC":
        try:
            return datetime.fromtimestamp(seconds, ZoneInfo(zone)).strftime(fmt)
        except (ValueError, ZoneInfoNotFoundError):
            pass  # unknown zone: the box's zone, UTC here
    return time.strftime(fmt, time.gmtime(seconds))


def _is_true(value: str | None) -> bool:
    """ast_true()."""
    return value is not None and value.strip().lower() in ("yes", "true", "y", "t", "1", "on")


def _strip_quoted(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        return text[1:-1]
    return text


def _callerid_parse(text: str) -> tuple[str | None, str | None]:
    """main/callerid.c ast_callerid_parse(): (name, number)."""
    text = _strip_quoted(text)
    if "<" in text:
        left, _, right = text.rpartition("<")
        number = right.rpartition(">")[0] if ">" in right else right
        return _strip_quoted(left).replace('\\"', '"'), number
    shrunk = _shrink_phone_number(text)
    if shrunk and all(c in "0123456789*#+" for c in shrunk):
        return None, shrunk
    return _strip_quoted(text), None


def _shrink_phone_number(number: str) -> str:
    """ast_shrink_phone_number(): drop ( ) - . and blanks."""
    return re.sub(r"[()\-.\s]", "", number)


# --------------------------------------------------------------------------- entry point


async def _connect(host: str, port: int, source: str | None = None
                   ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0) if source else None)
    sock = writer.get_extra_info("socket")
    if sock is not None:
        # Asterisk writes without TCP_NODELAY; the fake sends its pieces at once instead,
        # so chunked writes really reach the server as separate segments.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return reader, writer


async def _run_session(call: _Call, host: str, port: int, script: str, args: tuple[str, ...], context: str,
                       extension: str, priority: int, *, dead: bool) -> CallRecord | None:
    """AGI(agi://host:port/script,args) from the dialplan; None when nothing answers (d1:
    AGISTATUS=FAILURE, the dialplan goes on)."""
    try:
        reader, writer = await _connect(host, port, call.script.source_address)
    except OSError:
        call.variables["AGISTATUS"] = "FAILURE"
        return None
    call._next_session(reader, writer, f"agi://{host}:{port}/{script}", script, args, context, extension,
                       priority, dead)
    try:
        await call.run()
    finally:
        await call.close()
    return call.record


async def _continue(call: _Call, first: CallRecord, host: str, port: int, cont: Continuation) -> None:
    """[prepaid-in] after AGI(), then the hangup handlers (asterisk-conf, or the e-series harness)."""
    def wanted() -> bool:
        return cont.only_with is None or bool(call.variables.get(cont.only_with))

    def keep_facts() -> None:
        if cont.only_with is not None and wanted():
            entry = call._expand_db()
            if entry is not None:
                family, _, key = entry[0].partition("/")
                call.database[(family, key)] = entry[1]
                call.variables[cont.only_with] = ""

    ext = call.script.extension
    port = cont.port or port
    if first.closed_by is None:
        return  # the fake gave up: no dialplan to continue
    if call.agistatus == "SUCCESS" and not call.soft_hungup and cont.after_agi is not None and wanted():
        if call.bridge_ended_us is not None:
            call.after_bridge_cdr_us = call.bridge_ended_us + 2_500  # e1: the new CDR's answer
        script, args = cont.after_agi
        session = await _run_session(call, host, port, script, args, call.script.context, ext,
                                     cont.after_agi_priority, dead=False)
        if session is not None:
            first.sessions.append(session)
        keep_facts()
    call.after_bridge_cdr_us = None
    call.soft_hungup = True  # the dialplan hangs up; the handlers run on the dead channel
    for context in reversed(call.hangup_handlers):
        if context not in cont.handlers or not wanted():
            continue
        script, args, priority = cont.handlers[context]
        session = await _run_session(call, host, port, script, args, context, "s", priority, dead=True)
        if session is not None:
            first.sessions.append(session)
        keep_facts()


async def place_call(host: str, port: int, script: CallScript, *, ami: AmiServer | None = None) -> CallRecord:
    """Connect to the FastAGI server at host:port and play the Asterisk side of one call.

    Returns the :class:`CallRecord` once the call is over: the server closed the
    connection, the fake closed it (AGIEXITONHANGUP) or the fake gave up after
    ``script.idle_timeout_s`` (``closed_by`` None, with a violation). With a
    ``script.continuation`` the dialplan's later sessions (after ``AGI()``, hangup
    handlers) follow and are in ``record.sessions``; AstDB in ``record.database``.
    With ``ami``, the call's channels are those of that fake AMI (CoreShowChannels,
    Hangup, Getvar/Setvar) and its AstDB is the AMI's.
    Raises OSError if the connection cannot be made (Asterisk: AGISTATUS=FAILURE, d1).
    """
    reader, writer = await _connect(host, port, script.source_address)
    call = _Call(script, reader, writer, host, port, ami)
    try:
        await call.run()
    finally:
        await call.close()
    first = call.record
    if script.continuation is not None:
        await _continue(call, first, host, port, script.continuation)
        first.variables = dict(call.variables)
        for name, value in call.shared.items():
            first.variables[f"SHARED({name})"] = value
    first.database = {f"{family}/{key}": value for (family, key), value in call.database.items()}
    return first
