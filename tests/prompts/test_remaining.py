"""The remaining-time sentence: wording in German and English, and its pieces."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prompts import MAX_SECONDS, all_sounds, remaining_time, remaining_time_text, text_of
from prompts._numbers import COMPOUNDS, is_number_sound

# Written out by hand, not generated: the oracle for the generator.
DE = {
    1: "eine", 2: "zwei", 16: "sechzehn", 17: "siebzehn", 21: "einundzwanzig", 30: "dreißig",
    59: "neunundfünfzig", 60: "sechzig", 61: "einundsechzig", 99: "neunundneunzig",
    100: "hundert", 101: "hunderteins", 121: "hunderteinundzwanzig",
    999: "neunhundertneunundneunzig", 1000: "tausend", 1001: "tausendeins",
    2021: "zweitausendeinundzwanzig", 9999: "neuntausendneunhundertneunundneunzig",
}  # fmt: skip
EN = {
    1: "one", 2: "two", 16: "sixteen", 17: "seventeen", 21: "twenty-one", 30: "thirty",
    59: "fifty-nine", 60: "sixty", 61: "sixty-one", 99: "ninety-nine",
    100: "one hundred", 101: "one hundred one", 121: "one hundred twenty-one",
    999: "nine hundred ninety-nine", 1000: "one thousand", 1001: "one thousand one",
    2021: "two thousand twenty-one", 9999: "nine thousand nine hundred ninety-nine",
}  # fmt: skip
MINUTES = [0, *DE]
SECONDS = [0, 1, 30]


def expected_de(minutes: int, seconds: int) -> str:
    parts = []
    if minutes:
        parts.append(f"{DE[minutes]} {'Minute' if minutes == 1 else 'Minuten'}")
    if seconds:
        parts.append(f"{DE[seconds]} {'Sekunde' if seconds == 1 else 'Sekunden'}")
    if not parts:
        return "Sie haben keine Gesprächszeit mehr."
    return "Sie haben noch " + " und ".join(parts) + " Gesprächszeit."


def expected_en(minutes: int, seconds: int) -> str:
    parts = []
    if minutes:
        parts.append(f"{EN[minutes]} {'minute' if minutes == 1 else 'minutes'}")
    if seconds:
        parts.append(f"{EN[seconds]} {'second' if seconds == 1 else 'seconds'}")
    if not parts:
        return "You have no time left."
    return "You have " + " and ".join(parts) + " left."


@pytest.mark.parametrize("seconds", SECONDS)
@pytest.mark.parametrize("minutes", MINUTES)
def test_german_wording(minutes: int, seconds: int) -> None:
    assert remaining_time_text(minutes * 60 + seconds, "de") == expected_de(minutes, seconds)


@pytest.mark.parametrize("seconds", SECONDS)
@pytest.mark.parametrize("minutes", MINUTES)
def test_english_wording(minutes: int, seconds: int) -> None:
    assert remaining_time_text(minutes * 60 + seconds, "en") == expected_en(minutes, seconds)


@pytest.mark.parametrize(
    ("seconds", "language", "text"),
    [
        (750, "de", "Sie haben noch zwölf Minuten und dreißig Sekunden Gesprächszeit."),
        (750, "en", "You have twelve minutes and thirty seconds left."),
        (60, "de", "Sie haben noch eine Minute Gesprächszeit."),
        (60, "en", "You have one minute left."),
        (0, "de", "Sie haben keine Gesprächszeit mehr."),
        (0, "en", "You have no time left."),
        (1, "de", "Sie haben noch eine Sekunde Gesprächszeit."),
        (120, "en", "You have two minutes left."),
        (1234 * 60, "en", "You have one thousand two hundred thirty-four minutes left."),
        (1100 * 60, "de", "Sie haben noch tausendhundert Minuten Gesprächszeit."),
        (21_000 * 60, "de", "Sie haben noch einundzwanzigtausend Minuten Gesprächszeit."),
        (101_000 * 60, "de", "Sie haben noch hunderteintausend Minuten Gesprächszeit."),
        (101_000 * 60, "en", "You have one hundred one thousand minutes left."),
        (MAX_SECONDS, "de",
         ("Sie haben noch neunhundertneunundneunzigtausendneunhundertneunundneunzig Minuten"
          " und neunundfünfzig Sekunden Gesprächszeit.")),
    ],
)  # fmt: skip
def test_whole_sentences(seconds: int, language: str, text: str) -> None:
    assert remaining_time_text(seconds, language) == text


@pytest.mark.parametrize(
    ("n", "de", "en"),
    [
        (1, "eins", "one"), (7, "sieben", "seven"), (11, "elf", "eleven"),
        (12, "zwölf", "twelve"), (13, "dreizehn", "thirteen"), (20, "zwanzig", "twenty"),
        (40, "vierzig", "forty"), (70, "siebzig", "seventy"), (77, "siebenundsiebzig", "seventy-seven"),
        (85, "fünfundachtzig", "eighty-five"), (91, "einundneunzig", "ninety-one"),
    ],
)  # fmt: skip
def test_number_pieces_say_whole_words(n: int, de: str, en: str) -> None:
    assert text_of(f"ivr/digits/{n}", "de") == de
    assert text_of(f"ivr/digits/{n}", "en") == en


def test_pieces_of_the_glossary_sentence() -> None:
    assert remaining_time(750, "de") == [
        "ivr/time/you-have", "ivr/digits/12", "ivr/time/minutes", "ivr/time/and",
        "ivr/digits/30", "ivr/time/seconds", "ivr/time/left",
    ]  # fmt: skip
    assert remaining_time(0, "en") == ["ivr/time/none"]
    assert remaining_time(60, "de")[1] == "ivr/digits/1-f"  # "eine", not "eins"


@pytest.mark.parametrize("seconds", [-1, -60, MAX_SECONDS + 1])
def test_out_of_range_is_refused(seconds: int) -> None:
    with pytest.raises(ValueError):
        remaining_time(seconds, "de")
    with pytest.raises(ValueError):
        remaining_time_text(seconds, "en")


@pytest.mark.parametrize("language", ["fr", "DE", "", "de-DE"])
def test_unsupported_language_is_refused(language: str) -> None:
    with pytest.raises(ValueError, match="unsupported language"):
        remaining_time(60, language)


def test_non_integers_are_refused() -> None:
    with pytest.raises(TypeError):
        remaining_time(1.5, "de")  # type: ignore[arg-type]  # the point of the test


def test_supports_at_least_9999_minutes() -> None:
    assert MAX_SECONDS >= 9999 * 60 + 59


@given(st.integers(min_value=0, max_value=9999 * 60 + 59), st.sampled_from(["de", "en"]))
def test_only_catalogue_sounds_up_to_9999_minutes(seconds: int, language: str) -> None:
    assert set(remaining_time(seconds, language)) <= all_sounds()


@given(st.integers(min_value=0, max_value=MAX_SECONDS), st.sampled_from(["de", "en"]))
def test_text_is_what_the_pieces_say(seconds: int, language: str) -> None:
    pieces = remaining_time(seconds, language)
    assert set(pieces) <= all_sounds()
    text = remaining_time_text(seconds, language)
    # Every piece's text, in order, and nothing else: only the spaces
    # between German number pieces go, and a final full stop comes.
    said = ""
    for i, name in enumerate(pieces):
        glued = COMPOUNDS[language] and i > 0 and is_number_sound(pieces[i - 1])
        glued = glued and is_number_sound(name)
        said += ("" if i == 0 or glued else " ") + text_of(name, language)
    assert text in (said, said + ".")
    assert text.endswith(".")


@given(st.integers(min_value=1, max_value=MAX_SECONDS), st.sampled_from(["de", "en"]))
def test_sentence_shape(seconds: int, language: str) -> None:
    pieces = remaining_time(seconds, language)
    assert pieces[0] == "ivr/time/you-have"
    assert pieces[-1] == "ivr/time/left"
    minutes, secs = divmod(seconds, 60)
    assert ("ivr/time/and" in pieces) == bool(minutes and secs)
    assert ("ivr/time/minute" in pieces) == (minutes == 1)
    assert ("ivr/time/seconds" in pieces) == (secs > 1)
    assert "ivr/digits/0" not in pieces  # zero is never said, it is left out
