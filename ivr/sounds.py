"""The projects' own recordings, looked up once per ``max_age_s`` instead of per use.

``prompts.custom_sound`` asks the file system whether a project recorded a prompt
(``Path.is_file``); a call asks two or three times (the welcome, the one-minute
warning …), which cost a bound call ~5 % of its CPU (``bench/``, py-spy). The engine
keeps one ``CustomSounds`` and trusts an answer for ``max_age_s`` — the same
``config_refresh_s`` within which the routing snapshot picks up an operator's
change — so a recording imported with ``ivr prompts import`` is played within that
time, and one removed is no longer named after it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from prompts import custom_sound

__all__ = ["CustomSounds"]


class CustomSounds:
    def __init__(self, *, max_age_s: float, monotonic: Callable[[], float]) -> None:
        self._max_age_s = max_age_s
        self._monotonic = monotonic
        self._known: dict[tuple[str, str, str, str], tuple[float, str | None]] = {}

    def get(self, project: str, prompt: str, language: str, sounds_dir: str) -> str | None:
        """``prompts.custom_sound``, answered from memory while the answer is young enough.
        Raises ValueError as ``custom_sound`` does (an unknown prompt or language)."""
        key = (project, prompt, language, sounds_dir)
        now = self._monotonic()
        known = self._known.get(key)
        if known is not None and now - known[0] < self._max_age_s:
            return known[1]
        name = custom_sound(project, prompt, language, Path(sounds_dir))
        if len(self._known) > 10_000:  # projects x prompts x languages: never near; a bound anyway
            self._known.clear()
        self._known[key] = (now, name)
        return name
