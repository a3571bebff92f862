"""The warning before the cut-off: one built file per length it can say, and when it plays.

Asterisk plays ``Dial``'s ``L(limit:warning)`` warning with
``ast_stream_and_wait(chan, LIMIT_WARNING_FILE)`` (``bridges/bridge_builtin_interval_features.c``,
``limits_interval_playback``): one file name, opened as is by ``ast_streamfile``
(``main/file.c``), which, unlike ``Playback`` (``apps/app_playback.c``), does not split a
``&``-joined list. So "Ihre Gesprächszeit endet in zwei Minuten" cannot be composed from
the number pieces at call time; each length the engine may announce is a file of its own,
``ivr/warning/<seconds>``, built with the other prompts (``python -m prompts.build``). Sixty
seconds is the catalogue's own ``ivr/one-minute-warning`` (a project may import its own
recording of it).

The lengths (``WARNING_LENGTHS``) are 5 to 55 s in steps of 5, 1 to 5 minutes in half
minutes, whole minutes to 10, then 15, 20, 30, 45 and 60 minutes: 29 files, 1.2 to 1.4 MB
of audio per language, instead of one per second up to the 3,600 s a warning may be.

When it plays (``warning_length``): the warning starts when the longest length we can say
that is at most the project's ``warning_s`` and shorter than the call's limit is left. A
call longer than the threshold is warned at the threshold (rounded down to a length we can
say: ``--warning 100`` warns 90 s before the end); a call shorter than it is warned within
5 s of the callee's answer, with the time then really left; a call of 5 s or less gets no
warning (the announcement before the Dial has just said it). ``L()`` counts from the
callee's answer, and Asterisk drops a warning that is not shorter than the limit
(``main/features.c`` ``ast_bridge_timelimit``, ``bridge_builtin_set_limits``), hence
"shorter than the limit".
"""

from __future__ import annotations

__all__ = ["WARNING_LENGTHS", "is_warning_sound", "warning_length", "warning_seconds", "warning_sound",
           "warning_sounds"]

_WARNING = "ivr/warning/"
_ONE_MINUTE = "ivr/one-minute-warning"

#: Every length (seconds) the warning can say, ascending.
WARNING_LENGTHS: tuple[int, ...] = (
    *range(5, 60, 5),                 # 5 … 55 s
    *range(60, 301, 30),              # 1, 1½ … 5 minutes
    *range(360, 601, 60),             # 6 … 10 minutes
    900, 1200, 1800, 2700, 3600,      # 15, 20, 30, 45, 60 minutes
)


def warning_length(threshold_s: int, limit_s: int) -> int:
    """Return how many seconds before the end the warning plays (and says): the longest
    ``WARNING_LENGTHS`` entry at most ``threshold_s`` and shorter than ``limit_s``; 0 for no
    warning (``threshold_s`` 0, or nothing fits)."""
    fitting = [w for w in WARNING_LENGTHS if w <= threshold_s and w < limit_s]
    return fitting[-1] if fitting else 0


def warning_sound(seconds: int) -> str:
    """Return the sound that says the call ends in ``seconds`` (one of ``WARNING_LENGTHS``).

    Raises ``ValueError`` for a length there is no file for.
    """
    if seconds not in WARNING_LENGTHS:
        raise ValueError(f"no warning prompt for {seconds} s (see WARNING_LENGTHS)")
    return _ONE_MINUTE if seconds == 60 else f"{_WARNING}{seconds}"


def is_warning_sound(name: str) -> bool:
    """Whether ``name`` is one of the ``ivr/warning/<seconds>`` files (the one-minute one aside)."""
    stem = name.removeprefix(_WARNING)
    return stem != name and stem.isdigit() and int(stem) in WARNING_LENGTHS and int(stem) != 60


def warning_seconds(name: str) -> int:
    """The length an ``ivr/warning/<seconds>`` sound says. Raises ``KeyError`` for another name."""
    if not is_warning_sound(name):
        raise KeyError(name)
    return int(name.removeprefix(_WARNING))


def warning_sounds() -> set[str]:
    """Every ``ivr/warning/<seconds>`` file the catalogue builds."""
    return {f"{_WARNING}{w}" for w in WARNING_LENGTHS if w != 60}
