"""Open-loop send schedules: spacing, seeding, sharing among workers (pure)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from pytest_triton_perf.load.schedule import offsets_ns


def take(it: object, n: int) -> np.ndarray:
    return np.array(list(itertools.islice(it, n)), dtype=np.int64)  # type: ignore[call-overload]


def test_constant_rate_is_evenly_spaced() -> None:
    t = take(offsets_ns(1000, "constant"), 5000)
    assert t[0] == 0
    assert set(np.diff(t)) <= {999_999, 1_000_000, 1_000_001}


@pytest.mark.parametrize("arrival", ["constant", "poisson"])
@pytest.mark.parametrize("workers", [2, 3])
def test_workers_together_send_the_requested_rate(arrival: str, workers: int) -> None:
    rate, horizon_ns = 3000.0, 2_000_000_000
    parts = []
    for j in range(workers):
        t = take(offsets_ns(rate, arrival, seed=7, worker=j, workers=workers), 20_000)
        parts.append(t[t < horizon_ns])
    union = np.sort(np.concatenate(parts))
    tolerance = 0.001 if arrival == "constant" else 0.05
    assert len(union) == pytest.approx(rate * horizon_ns / 1e9, rel=tolerance)
    if arrival == "constant":
        # Interleaved shares rebuild the single-process schedule exactly.
        single = take(offsets_ns(rate, "constant"), len(union))
        assert np.abs(union - single).max() <= 1


def test_poisson_is_seeded_and_exponential() -> None:
    a = take(offsets_ns(500, "poisson", seed=3), 10_000)
    b = take(offsets_ns(500, "poisson", seed=3), 10_000)
    c = take(offsets_ns(500, "poisson", seed=4), 10_000)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    gaps = np.diff(a) / 1e9
    assert gaps.mean() == pytest.approx(1 / 500, rel=0.05)
    # Exponential gaps: standard deviation equals the mean.
    assert gaps.std() == pytest.approx(gaps.mean(), rel=0.1)


@pytest.mark.parametrize(("rate", "arrival"), [(0, "constant"), (-1, "poisson"), (5, "burst")])
def test_bad_schedule_arguments(rate: float, arrival: str) -> None:
    with pytest.raises(ValueError):
        next(offsets_ns(rate, arrival))
