"""The predictive strategy's flow over candidates whose probes and measurements are given:
which are verified, which fall back to the full capacity search, which are pruned on
their prediction; and how a tie of the best two is said and broken."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pytest_triton_perf.search.candidates import Arm, Measurement, plan
from pytest_triton_perf.search.config import parse_config
from pytest_triton_perf.search.predictive import TOLERANCE, Steps, run_predictive
from pytest_triton_perf.search.space import parse_space
from pytest_triton_perf.search.strategy import TIE_FLOOR, rank, tie_break
from tests.conftest import EXAMPLE_MODELS


def _arms(counts: list[int]) -> list[Arm]:
    committed = parse_config(EXAMPLE_MODELS / "sleepy" / "config.pbtxt")
    return list(plan("sleepy", parse_space({"instance_count": counts}), committed).arms)


class Bench:
    """Predicts ``predicted[n]`` for ``n`` instances and measures ``measured[n]``."""

    def __init__(self, predicted: dict[int, float], measured: dict[int, float]):
        self.predicted = predicted
        self.measured = measured
        self.calls: list[tuple[str, int]] = []
        self.released: list[int] = []

    def _n(self, arm: Arm) -> int:
        return int(arm.values["instance_count"])

    def probe(self, arm: Arm) -> float | None:
        self.calls.append(("probe", self._n(arm)))
        value = self.predicted[self._n(arm)]
        arm.measurements.append(Measurement(0, False, value, {}, (), None))
        return value

    def verify(self, arm: Arm) -> bool:
        self.calls.append(("verify", self._n(arm)))
        got, want = self.measured[self._n(arm)], self.predicted[self._n(arm)]
        arm.measurements.append(Measurement(1, True, got, {"capacity": got}, (), None))
        return abs(got / want - 1) <= TOLERANCE

    def fallback(self, arm: Arm) -> None:
        self.calls.append(("fallback", self._n(arm)))
        got = self.measured[self._n(arm)]
        arm.measurements.append(Measurement(2, True, got, {"capacity": got}, (), None))

    def release(self, arms: Sequence[Arm]) -> None:
        self.released += [self._n(a) for a in arms]

    def steps(self) -> Steps:
        return Steps(self.probe, self.verify, self.fallback, self.release)


def test_only_the_candidates_whose_prediction_could_win_are_measured() -> None:
    arms = _arms([1, 2, 3, 4])  # the committed one (1 instance) is merged into the space
    bench = Bench({1: 100.0, 2: 200.0, 3: 290.0, 4: 300.0}, {1: 98, 2: 195, 3: 280, 4: 285})
    pruned = run_predictive(arms, bench.steps(), verify_committed=False)
    # Every candidate probed once; 4 verified first; 3 could beat 285 (290 * 1.15): verified.
    assert [c for c in bench.calls if c[0] == "probe"] == [("probe", n) for n in (1, 2, 3, 4)]
    assert [c for c in bench.calls if c[0] != "probe"] == [("verify", 4), ("verify", 3)]
    assert pruned == 2
    by_count = {a.values["instance_count"]: a for a in arms}
    assert [by_count[n].status for n in (1, 2, 3, 4)] == [
        "pruned",
        "pruned",
        "finalist",
        "finalist",
    ]
    assert by_count[2].note == (
        "pruned on its prediction: capacity 200.0 predicted, +15% would not reach the best "
        "measured 285.0"
    )
    # Those that cannot beat even the top prediction measured 15% low are let go at once.
    assert bench.released[:2] == [2, 1]
    order = [(a.values["instance_count"], r) for a, r in rank(arms, "capacity")]
    # 285 and 280 are 1.8% apart, within TIE_FLOOR: the one with fewer instances first.
    assert order == [(3, 1), (4, 2), (2, 3), (1, 4)]


def test_a_measurement_off_its_prediction_falls_back_to_the_full_search() -> None:
    arms = _arms([1, 2, 3])
    # 3 instances are predicted 300 but measure 200 (-33%): searched the long way, and 2
    # instances (predicted 200, +15% = 230 > 200) are verified after all.
    bench = Bench({1: 100.0, 2: 200.0, 3: 300.0}, {1: 100, 2: 198, 3: 200})
    run_predictive(arms, bench.steps(), verify_committed=False)
    assert [c for c in bench.calls if c[0] != "probe"] == [
        ("verify", 3),
        ("fallback", 3),
        ("verify", 2),
    ]
    assert arms[0].status == "pruned"  # 1 instance: 115 < 200


def test_the_committed_configuration_is_verified_when_the_drift_gate_needs_it() -> None:
    arms = _arms([2, 3])  # the committed one has 1 instance: not in the space
    bench = Bench({1: 100.0, 2: 200.0, 3: 300.0}, {1: 100, 2: 200, 3: 300})
    run_predictive(arms, bench.steps(), verify_committed=True)
    assert [c for c in bench.calls if c[0] != "probe"] == [("verify", 3), ("verify", 1)]
    assert arms[0].committed and arms[0].status == "finalist"
    assert 1 not in bench.released[:-2]  # kept loaded for its verification


def _finalist(arm: Arm, value: float, windows: Sequence[float] = ()) -> None:
    result: Any = None
    if windows:

        class Window:
            def __init__(self, throughput: float):
                self.throughput = throughput

        class Result:
            pass

        result = Result()
        result.windows = [Window(w) for w in windows]
    arm.measurements.append(Measurement(1, True, value, {"capacity": value}, (), result))
    arm.status = "finalist"


def test_a_tie_within_noise_is_said_and_broken_by_fewer_instances() -> None:
    arms = _arms([2, 3])
    _finalist(arms[0], 100.0)  # 1 instance (committed)
    _finalist(arms[1], 200.0)
    _finalist(arms[2], 201.0)  # 3 instances, 0.5% ahead: within TIE_FLOOR
    finalists = [a for a, _ in rank(arms, "capacity")]
    tie = tie_break(sorted(finalists[:2], key=lambda a: -(a.last.objective or 0)), "capacity")
    assert tie is not None and tie.by == "fewer instances"
    assert tie.first is arms[1] and tie.margin == TIE_FLOOR
    assert tie.describe().startswith(
        "tie: sleepy__cfg1 and sleepy__cfg2 are 0.5% apart on the objective, within the "
        "measurement's noise (3.0%); ranked by fewer instances"
    )
    assert [a.values["instance_count"] for a, _ in rank(arms, "capacity")] == [2, 3, 1]


def test_noisy_windows_widen_the_tie_and_a_clear_lead_is_no_tie() -> None:
    arms = _arms([2, 3])
    # 6% apart, but each figure's windows scatter by about 10%: within noise.
    _finalist(arms[1], 200.0, windows=[180, 220, 190, 210])
    _finalist(arms[2], 212.0, windows=[190, 234, 200, 224])
    tie = tie_break([arms[2], arms[1]], "capacity")
    assert tie is not None and tie.margin > 0.06 and tie.first is arms[1]
    _finalist(arms[0], 260.0)  # 23% ahead of the next: no tie
    assert tie_break([arms[0], arms[2]], "capacity") is None
