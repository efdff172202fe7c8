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


#: Resamples of the bootstrap behind :func:`median_ci`.
BOOTSTRAP_RESAMPLES = 1000


def median_ci(values: Sequence[float], seed: int = 0) -> tuple[float, float] | None:
    """95% percentile-bootstrap interval of the median (None for fewer than two values).

    Used over window values (SLA intervals, baseline comparisons); the fixed seed makes the
    same windows give the same interval in the failure screen and in every report.
    """
    arr = np.asarray(values, dtype=np.float64)
    if len(arr) < 2:
        return None
    rng = np.random.default_rng(seed)
    samples = rng.choice(arr, size=(BOOTSTRAP_RESAMPLES, len(arr)), replace=True)
    medians = np.median(samples, axis=1)
    return float(np.percentile(medians, 2.5)), float(np.percentile(medians, 97.5))
