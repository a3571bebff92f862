"""The cut-off warning: which lengths exist, when one plays, and what it says."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from prompts import WARNING_LENGTHS, Prompt, all_sounds, sound, text_of, warning_length, warning_sound
from prompts._catalogue import warning_text

limits = st.integers(min_value=0, max_value=200_000)
thresholds = st.integers(min_value=0, max_value=3600)


@given(thresholds, limits)
def test_the_warning_is_a_sayable_length_within_the_threshold_and_the_limit(threshold: int, limit: int) -> None:
    w = warning_length(threshold, limit)
    if w:
        assert w in WARNING_LENGTHS
        assert w <= threshold
        assert w < limit   # Asterisk drops a warning not shorter than L() (features.c)
    # nothing longer that we could say would also fit
    assert not [x for x in WARNING_LENGTHS if w < x <= threshold and x < limit]


@given(thresholds, limits, limits)
def test_a_longer_call_is_never_warned_later(threshold: int, a: int, b: int) -> None:
    short, long = sorted((a, b))
    assert warning_length(threshold, short) <= warning_length(threshold, long)


@given(limits)
def test_no_threshold_no_warning(limit: int) -> None:
    assert warning_length(0, limit) == 0


def test_examples() -> None:
    assert warning_length(60, 600) == 60      # the usual one
    assert warning_length(120, 600) == 120
    assert warning_length(100, 600) == 90     # rounded down to what we can say
    assert warning_length(60, 30) == 25       # a short call: within 5 s of the answer
    assert warning_length(60, 60) == 55
    assert warning_length(60, 61) == 60
    assert warning_length(60, 5) == 0         # 5 s or less: the announcement said it
    assert warning_length(3600, 10**6) == 3600


def test_every_length_has_a_built_sound_in_every_language() -> None:
    names = all_sounds()
    for w in WARNING_LENGTHS:
        assert warning_sound(w) in names
    assert warning_sound(60) == sound(Prompt.ONE_MINUTE_WARNING)


def test_the_generated_sixty_is_the_catalogues_one_minute_warning() -> None:
    for language in ("de", "en"):
        assert warning_text(60, language) == text_of(sound(Prompt.ONE_MINUTE_WARNING), language)


def test_wording() -> None:
    assert text_of("ivr/warning/5", "de") == "Ihre Gesprächszeit endet in fünf Sekunden."
    assert text_of("ivr/warning/90", "de") == "Ihre Gesprächszeit endet in einer Minute und dreißig Sekunden."
    assert text_of("ivr/warning/150", "en") == "Your call will end in two minutes and thirty seconds."
    assert text_of("ivr/warning/2700", "de") == "Ihre Gesprächszeit endet in fünfundvierzig Minuten."
