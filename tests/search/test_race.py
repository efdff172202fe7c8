"""Racing (``search.race``): the dropping rule in seeded simulations, the round budget, and
one race on the suite's real embedded server."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from pytest_triton_perf.measure.engine import MeasureSettings
from pytest_triton_perf.search import run_search
from pytest_triton_perf.search.candidates import Arm, Measurement
from pytest_triton_perf.search.race import (
    ALPHA,
    Budget,
    RaceSteps,
    compare,
    race_budget,
    run_race,
    unraceable,
)
from pytest_triton_perf.search.strategy import rung0_settings
from pytest_triton_perf.server.local import LocalTritonServer

TRIALS = 300
#: What the rate of a rule held to ALPHA may read in TRIALS trials: 3 binomial standard
#: errors above it.
ALLOWANCE = ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / TRIALS)


def _arms(count: int) -> list[Arm]:
    return [Arm(i, f"m__cfg{i}", {"i": i}, None, i == 0, "", "") for i in range(count)]


class Machine:
    """Blocks of arms whose true objectives are ``truth``: a drift shared by every block of
    a round (what interleaving cancels), lognormal noise per block and, now and then, a
    hiccup that costs a block a third of its throughput."""

    def __init__(self, truth: list[float], rng: random.Random, noise: float = 0.05):
        self.truth, self.rng, self.noise = truth, rng, noise
        self.drift: dict[int, float] = {}
        self.released: list[str] = []

    def block(self, arm: Arm, round_: int) -> Measurement:
        drift = self.drift.setdefault(round_, math.exp(self.rng.gauss(0, 0.15)))
        value = self.truth[arm.index] * drift * math.exp(self.rng.gauss(0, self.noise))
        if self.rng.random() < 0.03:
            value *= 0.67
        measurement = Measurement(round_, False, value, {"throughput": value}, (), None)
        arm.measurements.append(measurement)
        return measurement

    def final(self, arm: Arm, rung: int) -> None:
        value = self.truth[arm.index]
        arm.measurements.append(Measurement(rung, True, value, {"throughput": value}, (), None))

    def steps(self) -> RaceSteps:
        return RaceSteps(self.block, self.final, lambda arms: self.released.extend(arms))


def _by_test(arm: Arm) -> bool:
    """Dropped by the t bound (not kept out by the budget's end)."""
    return arm.status == "pruned" and "paired t bound" in arm.note


@pytest.mark.parametrize(
    "truth",
    [
        # The committed configuration (first) 40% behind; the best two 3% apart.
        [60.0, 100.0, 97.0, 90.0, 70.0],
        # Five alike: each is "the best", and may be dropped no more often.
        [100.0] * 5,
    ],
    ids=["differ", "alike"],
)
def test_the_best_is_dropped_at_most_alpha_of_the_time(truth: list[float]) -> None:
    budget = Budget(blocks=10 * len(truth), rounds=10)
    # Every challenger at least as good as every other arm.
    best = [i for i in range(1, len(truth)) if truth[i] == max(truth)]
    dropped = dict.fromkeys(best, 0)
    for trial in range(TRIALS):
        arms = _arms(len(truth))
        machine = Machine(truth, random.Random(trial))
        run_race(arms, machine.steps(), "throughput", budget, seed=trial)
        for i in best:
            dropped[i] += _by_test(arms[i])
        assert arms[0].status == "finalist"  # the committed one is never dropped
    assert max(dropped.values()) / TRIALS <= ALLOWANCE, f"{dropped} of {TRIALS} each"


def test_a_candidate_30_percent_worse_is_dropped_before_the_budget_in_most_trials() -> None:
    truth = [60.0, 100.0, 97.0, 90.0, 70.0]
    budget = Budget(blocks=50, rounds=10)
    early = 0
    for trial in range(TRIALS):
        arms = _arms(len(truth))
        machine = Machine(truth, random.Random(10_000 + trial))
        outcome = run_race(arms, machine.steps(), "throughput", budget, seed=trial)
        slow = arms[4]
        if _by_test(slow) and slow.last is not None and slow.last.rung < budget.rounds:
            early += 1
            assert slow in machine.released  # unloaded at once
        assert outcome.rounds <= budget.rounds
        finalists = [a for a in arms if a.status == "finalist"]
        assert 2 <= len(finalists) <= 3  # the committed one and one or two challengers
    assert early / TRIALS >= 0.9, f"{early} of {TRIALS}"


def test_a_latency_is_raced_lowest_first_and_the_note_says_why() -> None:
    arms = _arms(3)
    p99 = {0: 40.0, 1: 20.0, 2: 30.0}
    rounds: list[int] = []

    def block(arm: Arm, round_: int) -> Measurement:
        rounds.append(round_)
        value = p99[arm.index] * (1 + 0.01 * (round_ % 3))
        m = Measurement(round_, False, value, {"p99_ms": value}, (), None)
        arm.measurements.append(m)
        return m

    def final(arm: Arm, rung: int) -> None:
        v = p99[arm.index]
        arm.measurements.append(Measurement(rung, True, v, {"p99_ms": v}, (), None))

    outcome = run_race(
        arms, RaceSteps(block, final, lambda a: None), "p99_ms", Budget(30, 8), seed=7
    )
    assert outcome.stopped == "one challenger left" and outcome.rounds == 3
    assert rounds == [1] * 3 + [2] * 3 + [3] * 3  # one block per candidate per round
    assert [a.status for a in arms] == ["finalist", "finalist", "pruned"]
    assert arms[2].note.startswith("pruned after round 3: p99_ms 1.5x m__cfg1's over rounds 1-3")
    assert "at least 1.5x" in arms[2].note and "paired t bound" in arms[2].note
    assert "seed 7" in outcome.describe() and "6 look(s)" in outcome.describe()


def test_a_clear_sla_breach_in_most_rounds_makes_a_challenger_infeasible() -> None:
    arms = _arms(4)

    def block(arm: Arm, round_: int) -> Measurement:
        breaks = ("p99_ms 90 > 30",) if arm.index == 1 and round_ != 2 else ()
        # The other three take turns: none is told apart from the leader in 3 rounds.
        value = 105.0 if (arm.index + round_) % 2 else 100.0
        m = Measurement(round_, False, value, {"throughput": value}, breaks, None)
        arm.measurements.append(m)
        return m

    def final(arm: Arm, rung: int) -> None:
        arm.measurements.append(Measurement(rung, True, 1.0, {}, (), None))

    run_race(arms, RaceSteps(block, final, lambda a: None), "throughput", Budget(12, 3), seed=1)
    assert arms[1].status == "infeasible"
    assert arms[1].note == "clearly breaks p99_ms 90 > 30 (race: in 2 of 3 rounds, after round 3)"
    # Not told apart within the budget: the best two challengers go on to full length.
    assert [a.status for a in arms] == ["finalist", "infeasible", "finalist", "finalist"]


def test_compare_bounds_the_geometric_mean_ratio() -> None:
    leader = {1: math.log(100), 2: math.log(110), 3: math.log(90)}
    slower = {r: v + math.log(0.5) for r, v in leader.items()}
    found = compare(slower, leader, "throughput", 0.05)
    assert found is not None and found.worse and found.ratio == pytest.approx(0.5)
    assert found.bound == pytest.approx(0.5) and found.rounds == (1, 2, 3)
    assert compare({1: 0.0}, {1: 0.0}, "throughput", 0.05) is None
    alike = compare({1: 0.0, 2: 0.1}, {1: 0.1, 2: 0.0}, "throughput", 0.05)
    assert alike is not None and not alike.worse


def test_the_round_budget_is_what_halving_would_measure_for() -> None:
    full = MeasureSettings()  # 2 s of warm-up and 3 windows of 2 s: 8 s
    short = rung0_settings(full)  # 0.8 s
    # 6 candidates: halving measures 6 x 0.8 s, then 3 x 8 s; the race ends with 2 x 8 s,
    # which leaves 16 blocks, fewer than 3 rounds: 3 rounds (18 blocks).
    assert race_budget(6, short, short, full) == Budget(18, 3)
    # Longer full-length measurements leave more rounds (of 3 arms from the 4th on).
    longer = MeasureSettings(warmup_s=2, windows=3, window_s=6)
    assert race_budget(3, short, short, longer) == Budget(25, 8)
    assert unraceable("capacity", {}) is not None
    assert "alone" in (unraceable("gpu_memory_mb", {}) or "")
    assert "alone" in (unraceable("throughput", {"max_gpu_memory_mb": 100}) or "")
    assert unraceable("p99_ms", {"p99_ms": 30, "max_error_rate": 0}) is None


# -- on the real embedded server ---------------------------------------------------------

FULL = MeasureSettings(warmup_s=0.2, windows=2, window_s=0.3, max_windows=2)
SHORT = MeasureSettings(warmup_s=0.1, windows=2, window_s=0.15, max_windows=2)


def test_a_race_drops_the_dominated_candidate_and_leaves_nothing_loaded(
    server: LocalTritonServer,
) -> None:
    """``sleepy`` (20 ms per execution, no batching) at concurrency 4 serves about 50/s
    per instance: 1 (committed), 2 and 4 instances race; 2 is half as fast as 4."""
    lines: list[str] = []
    result = run_search(
        server,
        "sleepy",
        {"instance_count": [1, 2, 4]},
        objective="throughput",
        strategy="race",
        settings=FULL,
        short_settings=SHORT,
        concurrency=4,
        notify=lines.append,
    )
    left = [
        m
        for m in server.repository_index()
        if "__cfg" in m["name"] and m.get("state") in ("READY", "LOADING", "UNLOADING")
    ]
    assert left == []
    assert result.strategy == "race"
    (note,) = [n for n in result.notes if n.startswith("race: ")]
    assert "stopped: one challenger left" in note and "seed " in note
    by_count: dict[Any, Any] = {c.values["instance_count"]: c for c in result.candidates}
    assert by_count[2].status == "pruned" and result.pruned == 1
    assert by_count[2].note.startswith("pruned after round 3: throughput 0.")
    assert "sleepy__cfg2's over rounds 1-3" in by_count[2].note  # the 4-instance leader
    best = result.best
    assert best is not None and best.values == {"instance_count": 4}
    assert best.rung == 4 and by_count[1].status == "finalist" and by_count[1].rung == 4
    assert best.throughput is not None and by_count[1].throughput is not None
    assert best.throughput > 2.5 * by_count[1].throughput
    assert sum(line.startswith("  round ") for line in lines) == 3
    assert result.cost["loads"] == 3  # loaded once, together
