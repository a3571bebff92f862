"""Percentiles and the summaries the report prints."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = ["distribution", "percentile"]


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (0 for none)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


def distribution(values_us: Sequence[int]) -> dict[str, Any]:
    """p50, p99 and max in milliseconds, and the count."""
    ordered = sorted(values_us)
    return {"n": len(ordered), "p50_ms": round(percentile(ordered, 50) / 1000, 3),
            "p99_ms": round(percentile(ordered, 99) / 1000, 3),
            "max_ms": round((ordered[-1] if ordered else 0) / 1000, 3)}
