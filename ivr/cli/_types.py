"""Option types that refuse what click's own would let through: NaN and infinities in
float options (``FloatRange`` compares NaN as in range), so a typo is one usage line,
never a traceback further down."""

from __future__ import annotations

import math
from typing import Any

import click


class Seconds(click.ParamType[float]):
    """A finite number of seconds in ``[low, high]``, e.g. ``--talk 65`` or ``2.5``."""

    name = "seconds"

    def __init__(self, low: float = 0.0, high: float = 86_400.0) -> None:
        self.low, self.high = low, high

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, float):
            number = value
        else:
            try:
                number = float(str(value).strip())
            except ValueError:
                self.fail(f"{value!r} is not a number of seconds", param, ctx)
        if not math.isfinite(number) or not self.low <= number <= self.high:
            self.fail(f"{value!r} is not between {self.low:g} and {self.high:g} seconds", param, ctx)
        return number
