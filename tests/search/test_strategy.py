"""Successive halving and the grid over candidates whose figures are given: which are
measured at which rung, which are pruned, how they are ranked."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_triton_perf.search.candidates import Arm, Measurement, plan
from pytest_triton_perf.search.config import parse_config
from pytest_triton_perf.search.space import parse_space
from pytest_triton_perf.search.strategy import rank, run_strategy
from tests.conftest import EXAMPLE_MODELS


def _arms(counts: list[int]) -> list[Arm]:
    committed = parse_config(EXAMPLE_MODELS / "sleepy" / "config.pbtxt")
    arms = plan("sleepy", parse_space({"instance_count": counts}), committed).arms
    return list(arms)


class Bench:
    """Measures an arm as ``objective[instance_count]``; breaks a constraint where told."""

    def __init__(
        self,
        objective: dict[int, float],
        *,
        breaks: dict[int, str] | None = None,
        fails: frozenset[int] = frozenset(),
    ):
        self.objective = objective
        self.breaks = breaks or {}
        self.fails = fails
        self.calls: list[tuple[str, int, bool]] = []

    def __call__(self, arm: Arm, rung: int, final: bool) -> None:
        self.calls.append((arm.name, rung, final))
        count = arm.values["instance_count"]
        if count in self.fails:
            arm.status, arm.note = "failed", "did not load: nope"
            return
        found = (self.breaks[count],) if count in self.breaks else ()
        figures: dict[str, Any] = {"capacity": self.objective[count]}
        arm.measurements.append(
            Measurement(rung, final, self.objective[count], figures, found, None)
        )


def test_halving_prunes_to_a_third_per_rung_and_measures_the_committed_one_throughout() -> None:
    arms = _arms([1, 2, 3, 4, 5, 6, 7, 8])  # the committed (1 instance) and 7 challengers
    bench = Bench({n: 10.0 * n for n in range(1, 9)})
    pruned = run_strategy("halving", arms, bench, "capacity")
    rungs = {name: [r for n, r, _ in bench.calls if n == name] for name, _, _ in bench.calls}
    # Rung 0: all 8; keep the best 3 of 7 challengers; rung 1: keep 2; rung 2: full length.
    assert rungs["sleepy__cfg0"] == [0, 1, 2]
    assert [len([c for c in bench.calls if c[1] == r]) for r in range(3)] == [8, 4, 3]
    assert all(final == (r == 2) for _, r, final in bench.calls)
    assert pruned == 5
    by_count = {a.values["instance_count"]: a for a in arms}
    assert [by_count[n].status for n in range(1, 9)] == [
        "finalist",
        *["pruned"] * 4,  # 2..5 at rung 0
        "pruned",  # 6 at rung 1
        "finalist",
        "finalist",
    ]
    assert by_count[2].note.startswith("pruned at rung 0: capacity 20.00, #7 of 7")
    assert by_count[6].note.startswith("pruned at rung 1: capacity 60.00, #3 of 3")
    order = [(a.values["instance_count"], r) for a, r in rank(arms, "capacity")]
    # Finalists by objective, then the pruned, the latest rung first.
    assert order == [(8, 1), (7, 2), (1, 3), (6, 4), (5, 5), (4, 6), (3, 7), (2, 8)]


def test_a_short_rung_drops_the_clearly_infeasible_and_the_final_one_checks_strictly() -> None:
    arms = _arms([1, 2, 3, 4, 5])
    bench = Bench(
        {1: 10.0, 2: 50.0, 3: 40.0, 4: 30.0, 5: 20.0},
        breaks={2: "p99_ms 90 > 30"},  # the best on the objective, but out of the SLA
    )
    pruned = run_strategy("halving", arms, bench, "capacity")
    by_count = {a.values["instance_count"]: a for a in arms}
    assert by_count[2].status == "infeasible"
    assert by_count[2].note == "clearly breaks p99_ms 90 > 30 at rung 0"
    assert [by_count[n].status for n in (3, 4, 5)] == ["finalist", "finalist", "pruned"]
    assert pruned == 1
    ranked = rank(arms, "capacity")
    assert ranked[-1] == (by_count[2], None)  # infeasible: last, no rank


def test_the_committed_configuration_is_kept_even_when_it_is_the_worst_or_breaks() -> None:
    arms = _arms([1, 2, 3, 4])
    bench = Bench({1: 1.0, 2: 5.0, 3: 6.0, 4: 7.0}, breaks={1: "p99_ms 99 > 30"})
    run_strategy("halving", arms, bench, "capacity")
    committed = arms[0]
    assert [r for n, r, _ in bench.calls if n == committed.name] == [0, 1]
    assert committed.status == "infeasible"
    assert "at full length" in committed.note


@pytest.mark.parametrize("objective", ["p99_ms", "gpu_memory_mb"])
def test_objectives_to_minimise_keep_the_lowest(objective: str) -> None:
    arms = _arms([1, 2, 3, 4, 5])
    bench = Bench({1: 30.0, 2: 10.0, 3: 40.0, 4: 20.0, 5: 50.0})
    run_strategy("halving", arms, bench, objective)
    order = [a.values["instance_count"] for a, _ in rank(arms, objective)]
    assert order[:3] == [2, 4, 1]  # the finalists, lowest first; 3 and 5 pruned
    assert {a.values["instance_count"] for a in arms if a.status == "pruned"} == {3, 5}


def test_grid_measures_every_candidate_once_at_full_length_and_failures_rank_last() -> None:
    arms = _arms([1, 2, 3, 4, 5])
    bench = Bench({n: float(n) for n in range(1, 6)}, fails={3})
    assert run_strategy("grid", arms, bench, "throughput") == 0
    assert sorted(bench.calls) == sorted((a.name, 0, True) for a in arms)
    ranked = rank(arms, "throughput")
    assert [(a.values["instance_count"], r) for a, r in ranked] == [
        (5, 1),
        (4, 2),
        (2, 3),
        (1, 4),
        (3, None),
    ]
    assert ranked[-1][0].status == "failed"
