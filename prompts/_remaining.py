"""The remaining-time sentence, as sound pieces and as the text they say.

    Sie haben noch | zwölf | Minuten | und | dreißig | Sekunden | Gesprächszeit
    You have       | twelve | minutes | and | thirty | seconds  | left

Zero minutes or zero seconds are left out ("Sie haben noch dreißig Sekunden
Gesprächszeit", "You have two minutes left"); no time at all is its own
piece ("You have no time left"). The text is assembled from the texts of the
very pieces the audio plays, so a test of the text is a test of what callers
hear.
"""

from __future__ import annotations

import operator

from . import _numbers
from ._catalogue import check_language, text_of, time_sound

__all__ = ["MAX_SECONDS", "remaining_time", "remaining_time_text"]

#: The longest time the sentence can say: 999,999 minutes and 59 seconds
#: (almost two years; the brief asks for at least 9,999 minutes).
MAX_SECONDS = _numbers.MAX_NUMBER * 60 + 59


def remaining_time(seconds: int, language: str) -> list[str]:
    """Return the sound names that together say how much time is left.

    Raises ``ValueError`` for a negative or too large ``seconds`` (over
    ``MAX_SECONDS``) or an unsupported language, ``TypeError`` for a
    non-integer.
    """
    check_language(language)
    seconds = operator.index(seconds)
    if seconds < 0:
        raise ValueError(f"remaining time cannot be negative: {seconds}")
    if seconds > MAX_SECONDS:
        raise ValueError(f"remaining time {seconds} s is over the {MAX_SECONDS} s we can say")
    if seconds == 0:
        return [time_sound("none")]
    minutes, secs = divmod(seconds, 60)
    pieces = [time_sound("you-have")]
    if minutes:
        pieces += _numbers.count(minutes, language)
        pieces.append(time_sound("minute" if minutes == 1 else "minutes"))
    if minutes and secs:
        pieces.append(time_sound("and"))
    if secs:
        pieces += _numbers.count(secs, language)
        pieces.append(time_sound("second" if secs == 1 else "seconds"))
    pieces.append(time_sound("left"))
    return pieces


def say_text(pieces: list[str], language: str) -> str:
    """Return the sentence that playing ``pieces`` in order says.

    Number pieces in a row form one word in German ("zwei" "tausend" ->
    "zweitausend"); a final full stop is added if the last piece has none.
    """
    glue = _numbers.COMPOUNDS[check_language(language)]
    words: list[str] = []
    previous_was_number = False
    for name in pieces:
        is_number = _numbers.is_number_sound(name)
        text = text_of(name, language)
        if glue and is_number and previous_was_number:
            words[-1] += text
        else:
            words.append(text)
        previous_was_number = is_number
    sentence = " ".join(words)
    if not sentence.endswith((".", "!", "?")):
        sentence += "."
    return sentence


def remaining_time_text(seconds: int, language: str) -> str:
    """Return what ``remaining_time(seconds, language)`` says, as a sentence.

    Raises as ``remaining_time`` does.
    """
    return say_text(remaining_time(seconds, language), language)
