"""Parser for the FastAGI transcripts recorded from Asterisk 22.10.1.

The files live in ``/work/shared/asterisk-transcripts`` (override with the
environment variable ``ASTERISK_TRANSCRIPTS``); ``INDEX.md`` there describes them.
Two layouts exist:

* the recording server's (all but b4k)::

      # transcript: a1_headers
      # call.py variables: {"CALLER": "15551230000", ...}
      # outcome: AGISTATUS=HANGUP (h-exten), call duration 6.560s
      ## +      0.0ms  TCP connection accepted from ('127.0.0.1', 42818)
      >> +      0.2ms  agi_network: yes
      ...
      >> +      0.4ms                      <- the empty line that ends the agi_* block
      << +      1.0ms  ANSWER
      >> +    502.3ms  200 result=0

  ``>>`` is Asterisk -> server, ``<<`` server -> Asterisk, ``##`` a harness note;
  the text starts two spaces after ``ms`` and keeps trailing spaces
  (``agi_accountcode: ``).  ``>> ... <EOF: Asterisk closed the TCP connection>``
  marks the end of the stream, not a line on the wire.
* b4k's minimal server: ``<< 2246.435 ANSWER`` (engine monotonic seconds) and
  ``>> 200 result=0`` (no time), no ``agi_*`` block.

Files whose call never reached the server (c4_hangup_while_idle_agiexitonhangup,
d1_connection_refused) parse to a transcript without lines.

The recorder wrote a backslash in a command as ``\\\\``: b1 shows
``SET CALLERID "\\\\"Prepaid IVR\\\\" <8005550100>"`` answered by
``("Prepaid IVR" <8005550100>)``, which ``res_agi.c``'s parse_args only gives
for ``\\"`` on the wire (INDEX fact 9 writes it so).  :attr:`Line.wire` undoes it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

TRANSCRIPT_DIR = Path(os.environ.get("ASTERISK_TRANSCRIPTS", "/work/shared/asterisk-transcripts"))

Direction = Literal["<<", ">>", "##"]

_TIMED = re.compile(r"^(<<|>>|##) \+\s*(-?\d+(?:\.\d+)?)ms(?:  (.*))?$")
_MINIMAL_COMMAND = re.compile(r"^<< (\d+(?:\.\d+)?) (.*)$")
_MINIMAL_REPLY = re.compile(r"^>> (.*)$")
_EOF_MARK = "<EOF"


@dataclass(frozen=True)
class Line:
    """One transcript line."""

    direction: Direction
    ms: float | None  # ms since TCP accept (minimal layout: engine monotonic ms, replies None)
    text: str  # as recorded

    @property
    def wire(self) -> str:
        """The text as it was on the wire (the recorder's ``\\\\`` undone)."""
        return self.text.replace("\\\\", "\\")

    @property
    def is_eof(self) -> bool:
        """The ``<EOF: Asterisk closed the TCP connection>`` marker."""
        return self.direction == ">>" and self.text.startswith(_EOF_MARK)


@dataclass(frozen=True)
class Transcript:
    """A parsed transcript file."""

    name: str
    header: tuple[str, ...]  # the '#' lines, without '# '
    variables: Mapping[str, str]  # "call.py variables"
    outcome: str | None  # "AGISTATUS=HANGUP (h-exten), call duration 6.560s"
    lines: tuple[Line, ...]
    path: Path | None = field(default=None, compare=False)

    @property
    def has_env(self) -> bool:
        return any(line.direction == ">>" and line.text == "" for line in self.lines)

    @property
    def env_lines(self) -> list[str]:
        """The ``agi_*`` block as sent, ending with its empty line ([] if not recorded)."""
        if not self.has_env:
            return []
        block: list[str] = []
        for line in self.lines:
            if line.direction != ">>":
                continue
            block.append(line.wire)
            if line.text == "":
                return block
        raise AssertionError("unreachable")

    @property
    def env(self) -> dict[str, str]:
        """The ``agi_*`` block as a dict, in order."""
        return dict(line.split(": ", 1) for line in self.env_lines[:-1])

    @property
    def body(self) -> tuple[Line, ...]:
        """The lines after the ``agi_*`` block."""
        if not self.has_env:
            return self.lines
        end = next(
            i for i, line in enumerate(self.lines) if line.direction == ">>" and line.text == ""
        )
        return self.lines[end + 1 :]

    @property
    def commands(self) -> list[str]:
        """Command lines the server sent, as on the wire."""
        return [line.wire for line in self.body if line.direction == "<<"]

    @property
    def replies(self) -> list[str]:
        """Lines Asterisk sent after the ``agi_*`` block (unprompted ``HANGUP`` included)."""
        return [line.wire for line in self.body if line.direction == ">>" and not line.is_eof]

    @property
    def notes(self) -> list[str]:
        return [line.text for line in self.lines if line.direction == "##"]

    @property
    def closed_by_asterisk(self) -> bool:
        return any(line.is_eof for line in self.lines)

    @property
    def agistatus(self) -> str | None:
        """AGISTATUS from the outcome header, e.g. ``HANGUP``."""
        m = re.match(r"AGISTATUS=(\w+)", self.outcome or "")
        return m.group(1) if m else None


def parse_transcript(text: str, name: str = "", path: Path | None = None) -> Transcript:
    """Parse one transcript file's text.  Raises ValueError on a line it does not know."""
    header: list[str] = []
    variables: dict[str, str] = {}
    outcome: str | None = None
    lines: list[Line] = []
    raw_lines = text.split("\n")
    if raw_lines and raw_lines[-1] == "":
        raw_lines.pop()
    timed = any(_TIMED.match(raw) for raw in raw_lines)
    for number, raw in enumerate(raw_lines, start=1):
        if raw.startswith("#") and not raw.startswith("##"):
            content = raw[2:] if raw.startswith("# ") else raw[1:]
            header.append(content)
            if content.startswith("transcript:") and not name:
                name = content.split(":", 1)[1].split()[0]
            elif content.startswith("call.py variables:"):
                variables = json.loads(content.split(":", 1)[1])
            elif content.startswith("outcome:"):
                outcome = content.split(":", 1)[1].strip()
            continue
        if not raw.strip():
            continue
        m = _TIMED.match(raw) if timed else None
        if m:
            lines.append(Line(m.group(1), float(m.group(2)), m.group(3) or ""))  # type: ignore[arg-type]
            continue
        if not timed:
            m = _MINIMAL_COMMAND.match(raw)
            if m:
                lines.append(Line("<<", float(m.group(1)) * 1000, m.group(2)))
                continue
            m = _MINIMAL_REPLY.match(raw)
            if m:
                lines.append(Line(">>", None, m.group(1)))
                continue
        raise ValueError(f"{name or path}: line {number} not understood: {raw!r}")
    return Transcript(
        name=name,
        header=tuple(header),
        variables=variables,
        outcome=outcome,
        lines=tuple(lines),
        path=path,
    )


def load(name: str, directory: Path = TRANSCRIPT_DIR) -> Transcript:
    """Load ``<directory>/<name>.txt``."""
    path = directory / f"{name}.txt"
    return parse_transcript(path.read_text(encoding="utf-8"), name=name, path=path)


def available(directory: Path = TRANSCRIPT_DIR) -> list[str]:
    """Names of the transcripts in `directory`."""
    return sorted(p.stem for p in directory.glob("*.txt"))
