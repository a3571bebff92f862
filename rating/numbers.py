"""Caller numbers and blocked-number patterns (telco notation of the seeds).

A number is compared in every form an operator may write it: E.164 (``+41441234567``),
international with ``00``, and national with the trunk prefix (``0441234567``).
A pattern is digits, ``x`` for any one digit (``04412345x``), an optional leading
``+``, and an optional trailing ``.`` for "anything more".
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import phonenumbers

from .errors import InvalidInput

__all__ = ["CallerNumber", "PatternSet", "compile_pattern", "matches", "normalise_number",
           "parse_caller"]

# What Asterisk puts in agi_callerid when there is no usable number (transcripts a2–a4).
_WITHHELD = {"", "unknown", "anonymous", "restricted", "private", "unavailable"}
_PATTERN_RE = re.compile(r"^\+?[0-9x]+\.?$")


@dataclass(frozen=True)
class CallerNumber:
    raw: str
    e164: str | None        # None when withheld or not a number
    national: str | None    # national form with trunk prefix, digits only

    @property
    def anonymous(self) -> bool:
        return self.e164 is None

    def forms(self) -> tuple[str, ...]:
        """Every written form to match patterns against."""
        out = [self.raw]
        if self.e164:
            out += [self.e164, "00" + self.e164[1:], self.e164[1:]]
        if self.national:
            out.append(self.national)
        return tuple(dict.fromkeys(out))


def _digits_only(text: str) -> bool:
    body = text.removeprefix("+")
    return bool(body) and body.isascii() and body.isdigit()


# E.164 has at most 15 digits; with a 00 or + prefix and a little slack nothing longer is
# a phone number. Longer strings (caller-chosen) are junk and never reach the cache.
MAX_NUMBER_LEN = 20
# A caller ID as delivered is kept (CDRs, holds) up to this many characters: Asterisk's own
# caller numbers are shorter (AST_MAX_EXTENSION 80); more is caller-chosen filler.
MAX_CALLER_ID = 80


def stored_caller_id(raw: str) -> str:
    """The delivered caller ID as it may be stored: at most ``MAX_CALLER_ID`` characters."""
    return raw[:MAX_CALLER_ID]


def parse_caller(raw: str, region: str) -> CallerNumber:
    """Normalise what the network delivered; withheld and junk give ``e164=None``."""
    text = raw.strip()
    if len(text) > MAX_NUMBER_LEN or text.lower() in _WITHHELD or not _digits_only(text):
        return CallerNumber(raw=raw, e164=None, national=None)
    e164, national = _parse_digits(text, region)
    return CallerNumber(raw=raw, e164=e164, national=national)


# Bounded: only digit strings of at most MAX_NUMBER_LEN characters are keys (issue 9: the
# cache held 65,536 attacker-chosen strings); phonenumbers is the cost this saves.
@lru_cache(maxsize=16384)
def _parse_digits(text: str, region: str) -> tuple[str | None, str | None]:
    candidate = "+" + text[2:] if text.startswith("00") else text
    try:
        parsed = phonenumbers.parse(candidate, region)
    except phonenumbers.NumberParseException:
        return None, None
    if not phonenumbers.is_possible_number(parsed):
        # Short or odd numbers (test lines, NANP-like test ranges) still deserve a stable key.
        return candidate, None
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    national = re.sub(r"\D", "", phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL))
    return e164, national


def normalise_number(text: str, region: str) -> str:
    """An operator-typed number in E.164. Raises InvalidInput for anything else."""
    number = parse_caller(text, region)
    if number.e164 is None or not number.e164.startswith("+"):
        raise InvalidInput(f"not a phone number: {text!r} (E.164 like +41441234567, or national like 0441234567)")
    return number.e164


@lru_cache(maxsize=16384)
def compile_pattern(pattern: str) -> re.Pattern[str]:
    """Raises InvalidInput for anything but digits, ``x``, a leading ``+``, a trailing ``.``."""
    if not _PATTERN_RE.match(pattern):
        raise InvalidInput(f"not a number pattern: {pattern!r} (digits, x for any digit, optional trailing .)")
    body = pattern.removesuffix(".")
    regex = re.escape(body).replace("x", "[0-9]")
    return re.compile(regex + ("[0-9]*" if pattern.endswith(".") else "") + r"\Z")


def matches(pattern: str, number: CallerNumber) -> bool:
    compiled = compile_pattern(pattern)
    return any(compiled.match(form) for form in number.forms())


class PatternSet:
    """Blocked-number patterns prepared for many calls: plain numbers in a dict (one lookup
    per written form of the caller, however long the list), ``x`` / ``.`` patterns compiled.
    Matches exactly as ``matches`` over every pattern does; plain numbers are tried first."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self._plain: dict[str, str] = {}
        self._wild: list[tuple[str, re.Pattern[str]]] = []
        for pattern in patterns:
            if "x" in pattern or pattern.endswith("."):
                self._wild.append((pattern, compile_pattern(pattern)))
            else:
                compile_pattern(pattern)  # the same validation
                self._plain.setdefault(pattern, pattern)
        # One alternation answers "does any pattern match?" in C however long the list;
        # naming the pattern (a loop) is left to the rare caller who is blocked. Groups in
        # the alternation would name it too, but make every match ~15x slower (measured).
        self._any_wild = (re.compile("|".join(f"(?:{c.pattern})" for _, c in self._wild))
                          if self._wild else None)

    def first_match(self, number: CallerNumber) -> str | None:
        forms = number.forms()
        for form in forms:
            if form in self._plain:
                return self._plain[form]
        if self._any_wild is None or not any(self._any_wild.match(form) for form in forms):
            return None
        for pattern, compiled in self._wild:
            if any(compiled.match(form) for form in forms):
                return pattern
        return None  # pragma: no cover - the alternation matched, so one pattern does
