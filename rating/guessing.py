"""How long PIN guessing takes at the throttle's caps: the one place the figure is computed.

An attacker who may try ``guesses`` PINs every ``window_s`` (the project-wide cap: it
bounds every line, spoofed or not, and every engine sharing the store) draws PINs of
``pin_length`` digits without repeating one. With ``valid`` PINs among the ``10**L``
possible, the expected number of draws until the first valid one is ``(10**L + 1) /
(valid + 1)`` (the first of ``valid`` marked items in a random order of ``10**L``).

Integers only: the answer is whole seconds, rounded down (a lower bound for the operator).
"""

from __future__ import annotations

__all__ = ["ONE_YEAR_S", "expected_seconds_to_hit", "min_safe_pin_length"]

ONE_YEAR_S = 365 * 86_400


def expected_seconds_to_hit(*, pin_length: int, valid: int, guesses: int, window_s: int) -> int | None:
    """Expected seconds until some valid PIN is hit at ``guesses`` per ``window_s``.

    None when nothing can be hit (no valid PIN, or no guess allowed).

    Raises:
        ValueError: a negative count or a PIN length / window below 1.
    """
    if pin_length < 1 or window_s < 1 or valid < 0 or guesses < 0:
        raise ValueError("pin_length and window_s must be >= 1, valid and guesses >= 0")
    if valid == 0 or guesses == 0:
        return None
    space: int = 10 ** pin_length
    valid = min(valid, space)
    # draws = (space + 1) / (valid + 1); seconds = draws * window_s / guesses
    return ((space + 1) * window_s) // ((valid + 1) * guesses)


def min_safe_pin_length(*, valid: int, guesses: int, window_s: int, target_s: int = ONE_YEAR_S,
                        longest: int = 16) -> int | None:
    """The shortest PIN length whose expected time to a hit is at least ``target_s``;
    None when even ``longest`` digits do not reach it."""
    for length in range(1, longest + 1):
        seconds = expected_seconds_to_hit(pin_length=length, valid=valid, guesses=guesses, window_s=window_s)
        if seconds is None or seconds >= target_s:
            return length
    return None
