"""The sequential paired analysis: its boundary, its decisions, and its error rates under
optional stopping, simulated (pure numpy and scipy, no server)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.stats import norm

from pytest_triton_perf.baseline.sequential import (
    MIN_POOLED_REQUESTS,
    MIN_UNITS,
    decide,
    decide_pooled,
    look_schedule,
    nominal_t,
    pocock_constant,
)
from pytest_triton_perf.verdicts import IMPROVEMENT, PASS, REGRESSION

RULE = {"alpha": 0.01, "effect": 0.05, "target": 0.05}


def test_looks_are_whole_quads_dense_early_and_end_at_the_budget() -> None:
    looks = look_schedule(42)
    assert looks[0] == 6 and looks[-1] == 42
    assert all(n % 2 == 0 for n in looks)
    assert list(looks) == sorted(set(looks))
    assert looks[:3] == (6, 8, 10)  # close together early: clear answers come quickly
    assert len(looks) <= 9  # few looks: each spends some of alpha
    steps = [b / a for a, b in itertools.pairwise(looks)]
    assert all(s <= 1.6 for s in steps)
    assert look_schedule(5) == (4,)  # the fixed design: one look
    assert look_schedule(6) == (6,)


def test_pocock_boundary_is_z_for_one_look_and_widens_with_more_looks() -> None:
    assert pocock_constant((10,), 0.01) == pytest.approx(norm.ppf(0.99))
    c5 = pocock_constant(look_schedule(16), 0.01)
    c11 = pocock_constant(look_schedule(42), 0.01)
    assert norm.ppf(0.99) < c5 < c11 < 3.2
    # Pocock's tabulated constants (Jennison and Turnbull 2000, table 2.1), two-sided 0.05:
    # 2.178 for 2 equally spaced looks, 2.413 for 5; two-sided 0.01: 2.986 for 5.
    assert pocock_constant((1, 2), 0.025) == pytest.approx(2.178, abs=0.02)
    assert pocock_constant((2, 4, 6, 8, 10), 0.025) == pytest.approx(2.413, abs=0.02)
    assert pocock_constant((2, 4, 6, 8, 10), 0.005) == pytest.approx(2.986, abs=0.03)
    # The t version is wider with few degrees of freedom, and tends to c.
    assert nominal_t(2.8, 5) > nominal_t(2.8, 30) > 2.8


def test_a_clear_shift_is_a_regression_and_the_reverse_an_improvement() -> None:
    rng = np.random.default_rng(1)
    up = np.log(1.12) + rng.normal(0, 0.01, 8)
    d = decide(up, higher_is_worse=True, looks=(8,), **RULE)
    assert (
        d.verdict == REGRESSION and d.interval[0] > 0 and d.change == pytest.approx(0.12, abs=0.02)
    )
    # Throughput: higher is better, so the same ratios are an improvement.
    assert decide(up, higher_is_worse=False, looks=(8,), **RULE).verdict == IMPROVEMENT
    assert decide(-up, higher_is_worse=True, looks=(8,), **RULE).verdict == IMPROVEMENT


def test_a_pass_needs_the_interval_inside_the_target_and_enough_pairs() -> None:
    rng = np.random.default_rng(2)
    flat = rng.normal(0, 0.005, 12)
    d = decide(flat, higher_is_worse=True, looks=(12,), **RULE)
    assert d.verdict == PASS
    assert -0.05 < d.interval[0] < d.interval[1] < 0.05 and d.mde <= 0.05
    # Too few pairs never pass, however tight.
    few = decide(flat[: MIN_UNITS - 1], higher_is_worse=True, looks=(12,), **RULE)
    assert few.verdict is None
    # A significant change below the minimum effect is no regression; it passes once the
    # interval lies inside the target.
    small = np.log(1.02) + rng.normal(0, 0.002, 12)
    s = decide(small, higher_is_worse=True, looks=(12,), **RULE)
    assert s.interval[0] > 0 and s.verdict == PASS
    # Noisy pairs: undecided (the caller runs more pairs or calls it inconclusive).
    noisy = rng.normal(0, 0.08, 8)
    n = decide(noisy, higher_is_worse=True, looks=(8, 40), **RULE)
    assert n.verdict is None and n.mde > 0.05


def _sequential_run(
    rng: np.random.Generator, effect: float, sd: float, looks: tuple[int, ...]
) -> str | None:
    x = math.log1p(effect) + rng.normal(0, sd, looks[-1])
    for n in looks:
        d = decide(x[:n], higher_is_worse=True, looks=looks, **RULE)
        if d.verdict is not None:
            return d.verdict
    return None


@pytest.mark.parametrize("sd", [0.02, 0.05])
def test_error_rates_hold_under_optional_stopping(sd: float) -> None:
    """Stopping at the first look that decides: false alarms (no change) and false passes
    (a change of exactly the target) stay at most alpha (0.01), where testing at every look
    with the fixed-sample quantile would not. 400 simulated runs each: the bound checked is
    alpha plus three binomial standard errors."""
    rng = np.random.default_rng(7)
    looks = look_schedule(30)
    runs = 400
    slack = 3 * math.sqrt(0.01 * 0.99 / runs)
    null = [_sequential_run(rng, 0.0, sd, looks) for _ in range(runs)]
    at_target = [_sequential_run(rng, 0.05, sd, looks) for _ in range(runs)]
    assert null.count(REGRESSION) / runs <= 0.01 + slack
    assert at_target.count(PASS) / runs <= 0.01 + slack
    # And the procedure does decide: a +20% change is found, no change passes when the
    # spread allows it.
    big = [_sequential_run(rng, 0.20, sd, looks) for _ in range(50)]
    assert big.count(REGRESSION) == 50
    if sd == 0.02:
        assert null.count(PASS) / runs > 0.9


def test_naive_repeated_testing_would_inflate_false_alarms() -> None:
    """The reason for the boundary: the fixed-sample t quantile at every look raises false
    alarms well above alpha (here at alpha 0.05, where the effect shows in 400 runs)."""
    from scipy.stats import t as student_t

    rng = np.random.default_rng(3)
    looks = look_schedule(40)
    naive = 0
    for _ in range(400):
        x = rng.normal(0, 0.03, looks[-1])
        for n in looks:
            m, se = x[:n].mean(), x[:n].std(ddof=1) / math.sqrt(n)
            if m / se > student_t.ppf(0.95, n - 1):
                naive += 1
                break
    assert naive / 400 > 0.10


def test_pooled_p99_waits_for_enough_requests_and_sees_a_tail_shift() -> None:
    rng = np.random.default_rng(4)

    def blocks(n: int, per: int, scale: float) -> list[np.ndarray]:
        return [scale * rng.lognormal(np.log(20), 0.1, per) for _ in range(n)]

    few = decide_pooled(blocks(4, 20, 1.0), blocks(4, 20, 1.0), 99, looks=(4,), **RULE)
    assert few is None and MIN_POOLED_REQUESTS > 4 * 20
    same = decide_pooled(blocks(20, 100, 1.0), blocks(20, 100, 1.0), 99, looks=(20,), **RULE)
    assert same is not None and same.verdict in (PASS, None)
    assert abs(same.change) < 0.05
    slower = decide_pooled(blocks(20, 100, 1.0), blocks(20, 100, 1.3), 99, looks=(20,), **RULE)
    assert slower is not None and slower.verdict == REGRESSION
    assert slower.change == pytest.approx(0.3, abs=0.08)
    assert slower.bootstrap is not None and slower.bootstrap[0] > 0
