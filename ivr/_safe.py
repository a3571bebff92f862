"""Caller-controlled text made inert for terminals and spreadsheets (issue 9).

A caller ID is whatever the far end put in the SIP ``From``: ``ESC]0;…BEL`` sets the
operator's terminal title, ``ESC[2J`` clears the screen, ``=HYPERLINK(…)`` in a CSV
cell runs when a spreadsheet opens it. Every table, report and console log line goes
through ``printable``; every CSV cell through ``csv_cell``.

CSV policy (OWASP "CSV Injection"): a cell starting with ``=``, ``+``, ``-``, ``@``,
TAB or CR gets a leading ``'`` — except plain numbers, which are data we write
ourselves and operators sort and sum: a sign, digits and ``. , :`` (``+41791234567``,
``-65``, ``-1.50``, ``-0:01:05``) or a blocked-number pattern (``+4190x.``). Without
letters, quotes or parentheses such a cell cannot call a function, so it stays as is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["csv_cell", "csv_row", "printable", "unneutralise"]

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?[0-9][0-9.,:x]*")


def _escape(ch: str) -> str:
    code = ord(ch)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(text: str) -> str:
    """``text`` with every non-printable character (C0 and C1 controls, ESC, BEL, DEL,
    format and separator characters) written as a visible escape, ``\\x1b``."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


def csv_cell(value: object) -> object:
    """One CSV cell: numbers as they are; text that a spreadsheet would run as a formula
    prefixed with ``'``; non-printable characters escaped."""
    if value is None:
        return ""
    if isinstance(value, bool | int | float):
        return value
    text = str(value)
    if text.startswith(_FORMULA_START) and not _PLAIN_NUMBER.fullmatch(text):
        text = "'" + text
    return printable(text)


def csv_row(values: Iterable[object]) -> list[object]:
    return [csv_cell(v) for v in values]


def unneutralise(cell: str) -> str:
    """Undo ``csv_cell``'s prefix when reading our own CSV back (blacklist import)."""
    if cell.startswith("'") and cell[1:].startswith(_FORMULA_START):
        return cell[1:]
    return cell
