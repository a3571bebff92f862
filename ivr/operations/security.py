"""PIN guessing: the figure an operator reads (expected time to a hit at the throttle's
caps) and the wrong PINs the throttle counts, to list and clear."""

from __future__ import annotations

from dataclasses import dataclass

from rating.guessing import ONE_YEAR_S, expected_seconds_to_hit, min_safe_pin_length
from rating.models import PinFailureSummary, Project
from rating.store.base import OperatorStore

from ..settings import Settings

__all__ = ["GuessingFigure", "clear_pin_failures", "guessing_figure", "pin_failures"]


@dataclass(frozen=True)
class GuessingFigure:
    pin_length: int
    active_cards: int
    guesses: int              # the project cap: wrong PINs per window, for every line together
    window_s: int
    expected_s: int | None    # None: nothing to hit (no active card)
    safe_pin_length: int | None  # the shortest length that holds a year with these cards

    @property
    def too_short(self) -> bool:
        return self.expected_s is not None and self.expected_s < ONE_YEAR_S


def figure(project: Project, settings: Settings, active_cards: int) -> GuessingFigure:
    guesses, window_s = settings.pin_throttle_project_failures, settings.pin_throttle_window_s
    return GuessingFigure(
        pin_length=project.pin_length, active_cards=active_cards, guesses=guesses, window_s=window_s,
        expected_s=expected_seconds_to_hit(pin_length=project.pin_length, valid=active_cards, guesses=guesses,
                                           window_s=window_s),
        safe_pin_length=min_safe_pin_length(valid=max(active_cards, 1), guesses=guesses, window_s=window_s))


async def guessing_figure(store: OperatorStore, project: Project, settings: Settings, *, now_ms: int,
                          more_cards: int = 0) -> GuessingFigure:
    """The figure for the project's active cards (plus ``more_cards`` about to be bought)."""
    return figure(project, settings, await store.active_card_count(project.id, now_ms) + more_cards)


async def pin_failures(store: OperatorStore, settings: Settings, *, now_ms: int, project: Project | None = None,
                       line: str | None = None) -> list[PinFailureSummary]:
    """Wrong PINs within the throttle's window, per project and line (``anonymous``: withheld)."""
    return await store.pin_failures(since_ms=now_ms - settings.pin_throttle_window_s * 1000,
                                    project_id=project.id if project else None, caller_key=line)


async def clear_pin_failures(store: OperatorStore, *, project: Project | None = None, line: str | None = None) -> int:
    """Forget wrong PINs so the throttle lets the line (or project) in again; returns how many."""
    return await store.clear_pin_failures(project_id=project.id if project else None, caller_key=line)
