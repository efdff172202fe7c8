"""E-Divisive means and creep, proved by seeded simulation (issue 20): series of session
levels with 2% log-normal session noise."""

from __future__ import annotations

import numpy as np
import pytest

from pytest_triton_perf.baseline.changepoints import creep, e_divisive

SEEDS = 200
NOISE = 0.02


def _series(seed: int, n: int, step_at: int | None, step: float = 0.05) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.exp(rng.normal(0.0, NOISE, n)) * 10.0
    if step_at is not None:
        x[step_at:] *= 1 + step
    return x


def test_a_5pct_step_in_2pct_session_noise_is_found_near_its_position() -> None:
    """Detected (a change point anywhere) in >= 95% of 200 seeds; placed within one session
    of the true position in >= 85%, within two in >= 93%. The least-squares location, the
    maximum-likelihood one for a single shift, is within one in 90% at this signal (a step
    of 2.5 noise sd): no detector places it within one in 95% (closing note of issue 20)."""
    found = near1 = near2 = 0
    for seed in range(SEEDS):
        x = _series(seed, 20, 10)
        cps = e_divisive(x, seed=seed)
        found += bool(cps)
        near1 += any(abs(c.index - 10) <= 1 for c in cps)
        near2 += any(abs(c.index - 10) <= 2 for c in cps)
    assert found / SEEDS >= 0.95
    assert near1 / SEEDS >= 0.85
    assert near2 / SEEDS >= 0.93


def test_series_without_a_step_give_a_false_change_point_in_at_most_5pct() -> None:
    false = sum(bool(e_divisive(_series(seed, 20, None), seed=seed)) for seed in range(SEEDS))
    assert false / SEEDS <= 0.05


def test_a_change_point_reports_levels_change_and_interval() -> None:
    x = _series(3, 16, 8, step=0.20)
    (cp,) = e_divisive(x, seed=3)
    assert cp.index == 8
    assert cp.before == pytest.approx(10.0, rel=0.03)
    assert cp.after == pytest.approx(12.0, rel=0.03)
    assert cp.ci_pct[0] < cp.change_pct < cp.ci_pct[1]
    assert 15 < cp.change_pct < 25 and cp.ci_pct[0] > 10
    assert cp.p_value <= 0.01


def test_two_steps_are_both_found() -> None:
    x = _series(5, 24, 8, step=0.15)
    x[16:] *= 0.85
    assert [c.index for c in e_divisive(x, seed=5)] == [8, 16]


def test_short_or_constant_series_have_no_change_point() -> None:
    assert e_divisive([10.0, 11.0, 12.0]) == []
    assert e_divisive([10.0] * 12) == []


def test_a_1pct_per_commit_creep_over_10_commits_is_reported() -> None:
    """No single step of 1% stands out of 2% noise; the drift over ten commits does: its
    95% interval excludes zero in >= 95% of 200 seeds, and no change point explains it away
    as a single step in most."""
    seen = 0
    for seed in range(SEEDS):
        rng = np.random.default_rng(seed)
        levels = 10.0 * np.exp(rng.normal(0.0, NOISE, 11) + np.log(1.01) * np.arange(11))
        drift = creep(levels)
        assert drift is not None and drift.span == 10
        seen += drift.ci_pct[0] > 0
    assert seen / SEEDS >= 0.95


def test_no_creep_in_flat_series_is_reported_at_most_at_its_alpha() -> None:
    flagged = 0
    for seed in range(SEEDS):
        drift = creep(_series(seed, 11, None))
        assert drift is not None
        flagged += drift.ci_pct[0] > 0 or drift.ci_pct[1] < 0
    assert flagged / SEEDS <= 0.08  # 5% two-sided, with seed-to-seed slack


def test_the_maximum_likelihood_location_is_within_one_in_under_95pct() -> None:
    """Why the location bound above is 85%, not 95%: on the same 200 series, the
    least-squares location of one mean shift (the maximum-likelihood one, Hinkley 1970),
    given that there is a step, is within one session of it in 90% (92% over 2,000 seeds)."""
    near = 0
    for seed in range(SEEDS):
        x = np.log(_series(seed, 20, 10))
        sse = [
            ((x[:t] - x[:t].mean()) ** 2).sum() + ((x[t:] - x[t:].mean()) ** 2).sum()
            for t in range(2, 19)
        ]
        near += abs(2 + int(np.argmin(sse)) - 10) <= 1
    assert 0.85 <= near / SEEDS < 0.95
