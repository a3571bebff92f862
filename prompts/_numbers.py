"""Numbers as sequences of recorded pieces, in German and English.

How this works: a number is said by playing a few short recordings one after
the other, as Asterisk's own ``say.c`` does with ``digits/*``. The pieces are

    ivr/digits/1 … ivr/digits/99   whole words ("einundzwanzig", "twenty-one"):
                                   0–99 is where both languages are irregular,
                                   and a glued-together "ein" + "und" +
                                   "zwanzig" sounds robotic
    ivr/digits/hundred, /thousand  "hundert", "tausend" / "hundred", "thousand"
    ivr/digits/1-f                 "eine": the feminine form before "Minute" and
                                   "Sekunde" (Asterisk calls it digits/1F)
    ivr/digits/1-n                 "ein": the form that multiplies "tausend"
                                   in 101,000 = "hunderteintausend" (digits/1N)

English has no gendered forms; its 1-f and 1-n say "one" so that every sound
name exists in every language.

German writes a number as one word ("neuntausendneunhundertneunundneunzig"),
English with spaces ("nine thousand nine hundred ninety-nine"): see
``COMPOUNDS``. A leading one before "hundert"/"tausend" is not said in
German (101 = "hunderteins", 1000 = "tausend"); English always says it
("one hundred one", no "and").

Everything here assumes the language has been validated by the caller.
"""

from __future__ import annotations

__all__ = [
    "COMPOUNDS",
    "DIGITS",
    "HUNDRED",
    "MAX_NUMBER",
    "ONE_F",
    "ONE_N",
    "THOUSAND",
    "cardinal",
    "count",
    "is_number_sound",
    "number_sound",
    "number_sounds",
    "number_text",
]

DIGITS = "ivr/digits/"
HUNDRED = DIGITS + "hundred"
THOUSAND = DIGITS + "thousand"
ONE_F = DIGITS + "1-f"
ONE_N = DIGITS + "1-n"

#: The largest number ``cardinal`` can say: 999 thousand and 999.
MAX_NUMBER = 999_999

#: Whether a language writes consecutive number pieces as one word.
COMPOUNDS: dict[str, bool] = {"de": True, "en": False}

_DE_UNITS = (
    "", "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun",
    "zehn", "elf", "zwölf", "dreizehn", "vierzehn", "fünfzehn", "sechzehn", "siebzehn",
    "achtzehn", "neunzehn",
)  # fmt: skip
_DE_TENS = (
    "", "", "zwanzig", "dreißig", "vierzig", "fünfzig", "sechzig", "siebzig", "achtzig",
    "neunzig",
)  # fmt: skip
_EN_UNITS = (
    "", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
    "eighteen", "nineteen",
)  # fmt: skip
_EN_TENS = (
    "", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
)  # fmt: skip

_WORDS: dict[str, dict[str, str]] = {
    "de": {HUNDRED: "hundert", THOUSAND: "tausend", ONE_F: "eine", ONE_N: "ein"},
    "en": {HUNDRED: "hundred", THOUSAND: "thousand", ONE_F: "one", ONE_N: "one"},
}


def _de_word(n: int) -> str:
    if n < 20:
        return _DE_UNITS[n]
    tens, unit = divmod(n, 10)
    if unit == 0:
        return _DE_TENS[tens]
    # "einundzwanzig", not "einsundzwanzig"
    return ("ein" if unit == 1 else _DE_UNITS[unit]) + "und" + _DE_TENS[tens]


def _en_word(n: int) -> str:
    if n < 20:
        return _EN_UNITS[n]
    tens, unit = divmod(n, 10)
    if unit == 0:
        return _EN_TENS[tens]
    return _EN_TENS[tens] + "-" + _EN_UNITS[unit]


def number_sound(n: int) -> str:
    """Return the sound name of the whole word for 1 <= n <= 99."""
    if not 1 <= n <= 99:
        raise ValueError(f"no single piece for {n}: pieces cover 1 to 99")
    return f"{DIGITS}{n}"


def number_sounds() -> set[str]:
    """Return every number piece ``cardinal`` and ``count`` can return."""
    return {number_sound(n) for n in range(1, 100)} | {HUNDRED, THOUSAND, ONE_F, ONE_N}


def is_number_sound(name: str) -> bool:
    """Return whether ``name`` is one of the number pieces."""
    return name in _ALL_NUMBER_SOUNDS


def number_text(name: str, language: str) -> str:
    """Return what the number piece ``name`` says in ``language``.

    Raises ``KeyError`` if ``name`` is not a number piece.
    """
    if name in _WORDS[language]:
        return _WORDS[language][name]
    if not is_number_sound(name):
        raise KeyError(name)
    n = int(name.removeprefix(DIGITS))
    return _de_word(n) if language == "de" else _en_word(n)


def _below_thousand(n: int, language: str, *, multiplier: bool) -> list[str]:
    """Pieces for 1 <= n <= 999.

    ``multiplier`` is true when the result multiplies "tausend": German then
    says "ein", not "eins" (hunderteintausend).
    """
    hundreds, rest = divmod(n, 100)
    pieces: list[str] = []
    if hundreds:
        if hundreds > 1 or language == "en":
            pieces.append(number_sound(hundreds))
        pieces.append(HUNDRED)
    if rest:
        if rest == 1 and multiplier and language == "de":
            pieces.append(ONE_N)
        else:
            pieces.append(number_sound(rest))
    return pieces


def cardinal(n: int, language: str) -> list[str]:
    """Return the pieces that say ``n`` (1 <= n <= MAX_NUMBER) as a counting number.

    German 1 is "eins"; use ``count`` before a feminine noun.
    """
    if not 1 <= n <= MAX_NUMBER:
        raise ValueError(f"cannot say {n}: numbers go from 1 to {MAX_NUMBER}")
    thousands, rest = divmod(n, 1000)
    pieces: list[str] = []
    if thousands:
        # German says a lone thousand as "tausend", English as "one thousand".
        if thousands > 1 or language == "en":
            pieces += _below_thousand(thousands, language, multiplier=True)
        pieces.append(THOUSAND)
    if rest:
        pieces += _below_thousand(rest, language, multiplier=False)
    return pieces


def count(n: int, language: str) -> list[str]:
    """Return the pieces that say ``n`` before "Minute(n)" / "Sekunde(n)".

    Only an exact one changes: "eine Minute" (German nouns here are
    feminine); 21 stays "einundzwanzig Minuten", 101 "hunderteins Minuten".
    """
    if n == 1:
        return [ONE_F]
    return cardinal(n, language)


_ALL_NUMBER_SOUNDS = frozenset(number_sounds())
