"""Caller numbers and blocked-number patterns (telco notation of the seeds).

A pattern is digits, ``x`` for any one digit (``04412345x``), an optional leading
``+`` (or ``00``), and an optional trailing ``.`` for "anything more".

A block means one country's numbers (issue 12: a Swiss ``0795556677`` blocked
``+49795556677`` too, because every caller's *own* national form was compared). So a
block is compared in one form only, its E.164 prefix form (``+41795556677``,
``+41900.``): ``normalise_block`` turns what an operator types into it, given the
region a national pattern means (the project's, or an explicit one for the global
list), and refuses patterns that block whole countries unless asked (``4.`` was all of
+40…+49); ``block_key`` reads a stored entry the same way, so entries stored before
(national, or bare digits that matched ``+`` numbers without their ``+``) keep the
meaning they had in their project. The caller is compared by its E.164 number.

A CDR search (``matches``) still compares every written form of a number: it finds,
it does not refuse.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import phonenumbers

from .errors import InvalidInput

__all__ = ["CallerNumber", "PatternSet", "block_key", "block_matches", "caller_key", "compile_pattern",
           "matches", "normalise_block", "normalise_number", "parse_caller", "region_of_number",
           "trunk_prefix", "whole_countries"]

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


def _check_syntax(pattern: str) -> None:
    """Raises InvalidInput for anything but digits, ``x``, a leading ``+``, a trailing ``.``
    (without compiling: a list of 10,000 plain numbers needs no 10,000 regexes)."""
    if not _PATTERN_RE.match(pattern):
        raise InvalidInput(f"not a number pattern: {pattern!r} (digits, x for any digit, optional trailing .)")


@lru_cache(maxsize=16384)
def compile_pattern(pattern: str) -> re.Pattern[str]:
    """Raises InvalidInput for anything but digits, ``x``, a leading ``+``, a trailing ``.``."""
    _check_syntax(pattern)
    body = pattern.removesuffix(".")
    regex = re.escape(body).replace("x", "[0-9]")
    return re.compile(regex + ("[0-9]*" if pattern.endswith(".") else "") + r"\Z")


def matches(pattern: str, number: CallerNumber) -> bool:
    compiled = compile_pattern(pattern)
    return any(compiled.match(form) for form in number.forms())


# --- blocks: one meaning, the E.164 prefix form ---------------------------------
# Every country calling code phonenumbers knows, as digits ("1", "41", "423", "800" …).
_COUNTRY_CODES = tuple(str(cc) for cc in sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE))


def trunk_prefix(region: str) -> str | None:
    """The national (trunk) prefix numbers of ``region`` are dialled with (``0`` in CH, DE,
    AT, FR), None where national numbers have none (PL, IT, DK: the national number as is)."""
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    return metadata.national_prefix if metadata is not None else None


def region_of_number(e164: str) -> str | None:
    """The ISO region of an E.164 number (``+41441234567`` -> ``CH``); None for a number no
    country has (non-geographic +800 …, unassigned codes) or that does not parse."""
    try:
        region = phonenumbers.region_code_for_number(phonenumbers.parse(e164, None))
    except phonenumbers.NumberParseException:
        return None
    return region if region in phonenumbers.SUPPORTED_REGIONS else None


def _international(pattern: str) -> str | None:
    """``+…`` or ``00…`` as ``+…``; None for a national (or bare) pattern."""
    if pattern.startswith("+"):
        return pattern
    if pattern.startswith("00"):
        return "+" + pattern[2:]
    return None


def _national_to_e164(pattern: str, region: str, *, strict: bool) -> str:
    code = phonenumbers.country_code_for_region(region)
    if not code:
        raise InvalidInput(f"region {region!r}: an ISO country code such as CH, DE or AT")
    prefix = trunk_prefix(region)
    if prefix is None:
        return f"+{code}{pattern}"
    if pattern.startswith(prefix):
        return f"+{code}{pattern[len(prefix):]}"
    if strict:
        raise InvalidInput(f"pattern {pattern!r} is neither national (with the trunk prefix {prefix}, e.g."
                           f" {prefix}{pattern}) nor international (+{pattern} or 00{pattern})")
    # Stored before issue 12: bare digits matched a caller's E.164 number without its +.
    return "+" + pattern


def block_key(stored: str, region: str | None) -> str | None:
    """What a stored block means, in E.164 prefix form (``0791112244`` in CH ->
    ``+41791112244``), as the engine compares it. National entries mean ``region`` (the
    project's); a national entry of the global list means each project's own region,
    so without a region it has no key (None); nor has an entry with no digit left
    (``00``). Entries stored before issue 12 keep their meaning: bare digits (``4.``)
    matched callers' E.164 numbers without their ``+``.

    Raises:
        InvalidInput: not a pattern at all.
    """
    _check_syntax(stored)
    key = _international(stored)
    if key is None:
        if region is None:
            return None
        key = _national_to_e164(stored, region, strict=False)
    # An old entry such as "00" (accepted once) has no number left: it matches nothing.
    return key if _PATTERN_RE.match(key) else None


def normalise_block(text: str, region: str | None, *, whole_country: bool = False) -> str:
    """An operator-typed block in its E.164 prefix form, checked: it must be able to match
    a real number, must not match every number, and may block a whole country (every
    number of a country code: ``+41.``, ``4.``, ``0.``) only with ``whole_country``.
    ``region`` is the country a national pattern means (None: E.164 only).

    Raises:
        InvalidInput.
    """
    compile_pattern(text)
    if region is not None and region not in phonenumbers.SUPPORTED_REGIONS:
        raise InvalidInput(f"region {region!r}: an ISO country code such as CH, DE or AT")
    international = _international(text)
    if international is None:
        if region is None:
            raise InvalidInput(f"pattern {text!r} is national, but national numbers mean a different country in"
                               " each project: write it in E.164 (+41…, 0041…) or give its --region")
        international = _national_to_e164(text, region, strict=True)
    body = international[1:].removesuffix(".")
    open_ended = international.endswith(".")
    shown = repr(text) + ("" if text == international else f" ({international})")
    if not body.replace("x", "") and (open_ended or not body):
        raise InvalidInput(f"pattern {shown} would block every number; give the first digits after the"
                           " prefix, e.g. 0900. or +41900.")
    if body.startswith("0"):
        raise InvalidInput(f"pattern {shown} can never match: no country code starts with 0")
    if len(body) > 15:
        raise InvalidInput(f"pattern {shown} can never match: a phone number has at most 15 digits")
    if not open_ended and any(_fits(body, cc) and len(body) <= len(cc) for cc in _COUNTRY_CODES):
        raise InvalidInput(f"pattern {shown} can never match: it is no more than a country code")
    countries = whole_countries(international)
    if countries and not whole_country:
        raise InvalidInput(f"pattern {shown} blocks every number of {_countries_text(countries)}; add"
                           " --whole-country if that is meant, or give more digits")
    return international


def _fits(body: str, code: str) -> bool:
    """The pattern body agrees with the country code on the digits both have."""
    return all(c in ("x", d) for c, d in zip(body, code, strict=False))


def whole_countries(block: str) -> tuple[str, ...]:
    """The country calling codes (``"41"``) all of whose numbers an E.164 prefix pattern
    blocks: it agrees with the code and fixes no digit after it (``+41.``, ``+4.``,
    ``+41xxxxxxxxx``, ``+x9.``). Empty for a pattern that names digits inside a country;
    also for fewer than 4 x without the ``.`` (``+41x``), which matches no real number of it."""
    body = block.removeprefix("+").removesuffix(".")
    open_ended = block.endswith(".")
    found = []
    for code in _COUNTRY_CODES:
        if not _fits(body, code):
            continue
        rest = body[len(code):]
        if (open_ended and len(body) <= len(code)) or (
                (open_ended or len(rest) >= 4) and rest and not rest.replace("x", "")):
            found.append(code)
    return tuple(found)


def _countries_text(codes: tuple[str, ...]) -> str:
    def one(code: str) -> str:
        regions = [r for r in phonenumbers.COUNTRY_CODE_TO_REGION_CODE[int(code)] if r != "001"]
        return f"+{code} ({regions[0]})" if regions else f"+{code}"
    listed = ", ".join(one(c) for c in codes[:4])
    return listed + (f" and {len(codes) - 4} more country codes" if len(codes) > 4 else "")


def caller_key(number: CallerNumber, region: str) -> str | None:
    """The form blocks are compared with: the caller's number in E.164, read as a block is
    (``+``/``00`` international; with the trunk prefix national, the prefix replaced by the
    country code: phonenumbers keeps the 0 of a too-short ``044123456`` in its E.164).
    Digits without either are phonenumbers' reading. None when withheld or junk."""
    if number.e164 is None:
        return None
    text = number.raw.strip()
    international = _international(text)
    if international is not None:
        return international
    prefix = trunk_prefix(region)
    if prefix is not None and text.startswith(prefix):
        return _national_to_e164(text, region, strict=False)
    if number.e164.startswith("+"):
        return number.e164
    return _national_to_e164(text, region, strict=False)


def block_matches(stored: str, number: CallerNumber, region: str) -> bool:
    """Does the stored block match the caller, in a project of ``region``? (One pattern;
    ``PatternSet`` answers the same for many.)"""
    key, block = caller_key(number, region), block_key(stored, region)
    return key is not None and block is not None and compile_pattern(block).match(key) is not None


class PatternSet:
    """Blocked-number patterns of a project (of ``region``) prepared for many calls: plain
    numbers in a dict (one lookup, however long the list), ``x`` / ``.`` patterns
    compiled. Matches exactly as ``block_matches`` over every pattern does, and names the
    pattern as stored; plain numbers are tried first."""

    def __init__(self, patterns: Iterable[str], region: str) -> None:
        self._region = region
        self._plain: dict[str, str] = {}
        self._wild: list[tuple[str, re.Pattern[str]]] = []
        for pattern in patterns:
            key = block_key(pattern, region)  # validates, too
            if key is None:
                continue
            if "x" in key or key.endswith("."):
                self._wild.append((pattern, compile_pattern(key)))
            else:
                self._plain.setdefault(key, pattern)
        # One alternation answers "does any pattern match?" in C however long the list;
        # naming the pattern (a loop) is left to the rare caller who is blocked. Groups in
        # the alternation would name it too, but make every match ~15x slower (measured).
        self._any_wild = (re.compile("|".join(f"(?:{c.pattern})" for _, c in self._wild))
                          if self._wild else None)

    def first_match(self, number: CallerNumber) -> str | None:
        key = caller_key(number, self._region)
        if key is None:
            return None
        if key in self._plain:
            return self._plain[key]
        if self._any_wild is None or not self._any_wild.match(key):
            return None
        for pattern, compiled in self._wild:
            if compiled.match(key):
                return pattern
        return None  # pragma: no cover - the alternation matched, so one pattern does
