"""Medians with their spread, and percentiles."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def figure(values: Sequence[float]) -> dict[str, float | int | list[float]]:
    """The median of the runs with their spread (min, max, and max−min relative to the median)."""
    clean = [float(value) for value in values if value is not None and not math.isnan(value)]
    if not clean:
        return {"median": math.nan, "min": math.nan, "max": math.nan, "runs": 0, "values": []}
    median = statistics.median(clean)
    spread = (max(clean) - min(clean)) / median * 100 if median else 0.0
    return {
        "median": median,
        "min": min(clean),
        "max": max(clean),
        "spread_pct": spread,
        "runs": len(clean),
        "values": clean,
    }


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (`fraction` in 0..1); NaN for no values."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(0, min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1))
    return ordered[rank]


def median_of(row: dict[str, object], name: str) -> float:
    value = row.get(name)
    if isinstance(value, dict):
        median = value.get("median")
        return float(median) if isinstance(median, int | float) else math.nan
    return float(value) if isinstance(value, int | float) else math.nan
