from __future__ import annotations

import random
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rating.guessing import ONE_YEAR_S, expected_seconds_to_hit, min_safe_pin_length

lengths = st.integers(1, 16)
valid = st.integers(1, 10**6)
guesses = st.integers(1, 10**5)
windows = st.integers(1, 7 * 86_400)


@given(lengths, valid, guesses, windows)
def test_matches_the_exact_expectation_rounded_down(length: int, v: int, g: int, w: int) -> None:
    space = 10**length
    exact = Fraction(space + 1, min(v, space) + 1) * w / g
    got = expected_seconds_to_hit(pin_length=length, valid=v, guesses=g, window_s=w)
    assert got is not None and got <= exact < got + 1


@given(lengths, valid, guesses, windows)
def test_longer_pins_fewer_cards_slower_guessing_never_make_it_shorter(length: int, v: int, g: int,
                                                                      w: int) -> None:
    base = expected_seconds_to_hit(pin_length=length, valid=v, guesses=g, window_s=w)
    assert base is not None
    longer = expected_seconds_to_hit(pin_length=length + 1, valid=v, guesses=g, window_s=w)
    more_cards = expected_seconds_to_hit(pin_length=length, valid=v + 1, guesses=g, window_s=w)
    faster = expected_seconds_to_hit(pin_length=length, valid=v, guesses=g + 1, window_s=w)
    assert longer is not None and longer >= base
    assert more_cards is not None and more_cards <= base
    assert faster is not None and faster <= base


@given(valid, guesses, windows)
def test_min_safe_length_is_the_shortest_that_reaches_the_target(v: int, g: int, w: int) -> None:
    length = min_safe_pin_length(valid=v, guesses=g, window_s=w)
    if length is None:
        assert (expected_seconds_to_hit(pin_length=16, valid=v, guesses=g, window_s=w) or 0) < ONE_YEAR_S
        return
    assert (expected_seconds_to_hit(pin_length=length, valid=v, guesses=g, window_s=w) or 0) >= ONE_YEAR_S
    if length > 1:
        assert (expected_seconds_to_hit(pin_length=length - 1, valid=v, guesses=g, window_s=w)
                or 0) < ONE_YEAR_S


def test_nothing_to_hit_is_none_and_bad_input_is_refused() -> None:
    assert expected_seconds_to_hit(pin_length=8, valid=0, guesses=10, window_s=3600) is None
    assert expected_seconds_to_hit(pin_length=8, valid=5, guesses=0, window_s=3600) is None
    with pytest.raises(ValueError):
        expected_seconds_to_hit(pin_length=0, valid=5, guesses=1, window_s=3600)


def test_the_defaults_meet_the_targets() -> None:
    # 10,000 active cards, 12-digit PINs, the project cap of 1,000 wrong PINs per hour
    seconds = expected_seconds_to_hit(pin_length=12, valid=10_000, guesses=1000, window_s=3600)
    assert seconds is not None and seconds >= ONE_YEAR_S
    # the old 8 digits fall in hours at the same cap
    old = expected_seconds_to_hit(pin_length=8, valid=10_000, guesses=1000, window_s=3600)
    assert old is not None and old < 86_400


def test_agrees_with_a_simulation() -> None:
    rng = random.Random(7)
    space, v = 1000, 9
    draws = []
    for _ in range(3000):
        targets = set(rng.sample(range(space), v))
        order = rng.sample(range(space), space)
        draws.append(next(i for i, pin in enumerate(order, 1) if pin in targets))
    mean = sum(draws) / len(draws)
    predicted = expected_seconds_to_hit(pin_length=3, valid=v, guesses=1, window_s=1)
    assert predicted is not None and abs(mean - predicted) / predicted < 0.05
