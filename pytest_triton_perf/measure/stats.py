"""Order statistics used everywhere a latency is summarised."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

PERCENTILES: tuple[int, ...] = (50, 90, 95, 99)


def nearest_rank(sorted_values: np.ndarray | Sequence[float], p: float) -> float:
    """Percentile ``p`` (0 < p <= 100) by the nearest-rank method over sorted values.

    Nearest rank returns an observed value (never an interpolation), as perf_analyzer does:
    the p99 of 100 samples is the 99th smallest.
    """
    n = len(sorted_values)
    if n == 0:
        raise ValueError("nearest_rank needs at least one value")
    if not 0 < p <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {p!r}")
    rank = max(1, math.ceil(p / 100.0 * n))
    return float(sorted_values[rank - 1])
