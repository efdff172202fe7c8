"""The verdicts of one test (no server): the policies for undecided comparisons and for
measurements without a baseline, and the machine's load carried into the record and the
stored baseline run."""

from __future__ import annotations

import pytest

from pytest_triton_perf.baseline.compare import GateSettings
from pytest_triton_perf.gate import GateContext, Measured, baseline_run, evaluate_test
from tests.report.factory import make_result

LOAD = {"load_1m": 1.5, "steal_pct": 0.0}


def _evaluate(
    policy: str, windows: int, gate: GateSettings | None = None
) -> tuple[str | None, str]:
    reference = make_result(windows=windows, seed=1)
    candidate = make_result(windows=windows, seed=2)
    measured = Measured(candidate, "ab", reference=reference, host_load=LOAD)
    ctx = GateContext(
        key={}, environment={}, store=None, inconclusive=policy, gate=gate or GateSettings()
    )
    verdict = evaluate_test("t.py::test_x", None, [measured], ctx)
    return verdict.failure, verdict.records[0].verdict


def test_the_fail_policy_fails_an_undecided_comparison_saying_why_and_what_to_do() -> None:
    # 4 against 4 windows cannot reach alpha 0.01: every window metric is undecided.
    failure, verdict = _evaluate("fail", windows=4)
    assert verdict == "inconclusive"
    assert failure is not None
    assert failure.startswith(
        "Undecided performance comparison in t.py::test_x (--triton-perf-inconclusive=fail):\n"
        "  sleepy conc=1 batch=1 grpc (A/B against the reference)\n"
        "    p50_ms "
    )
    assert "inconclusive: underpowered: too few windows for any change on p50" in failure
    assert "let undecided results through with --triton-perf-inconclusive=warn" in failure


@pytest.mark.parametrize("policy", ["pass", "warn"])
def test_other_policies_do_not_fail_the_test(policy: str) -> None:
    assert _evaluate(policy, windows=4) == (None, "inconclusive")


def test_a_decided_comparison_passes_under_the_fail_policy() -> None:
    # Mann-Whitney's pass needs the one-sided bound, widened by the 2% run-to-run spread
    # of each arm's load, inside the margin: at 5% it cannot, at 10% it can.
    gate = GateSettings(
        min_effect={**GateSettings().min_effect, "p50_ms": 0.10, "throughput": 0.10}
    )
    assert _evaluate("fail", windows=12, gate=gate) == (None, "pass")


@pytest.mark.parametrize("policy", ["pass", "warn", "fail"])
def test_a_model_missing_from_the_ab_reference_follows_the_no_baseline_policy(
    policy: str,
) -> None:
    why = "model 'sleepy' does not exist in the reference (git revision HEAD~1)"
    measured = Measured(make_result(), "ab", reference_note=why)
    ctx = GateContext(key={}, environment={}, store=None, no_baseline=policy)
    verdict = evaluate_test("t.py::test_x", None, [measured], ctx)
    assert verdict.records[0].verdict == "no baseline"
    if policy != "fail":
        assert verdict.failure is None
        return
    assert verdict.failure == (
        "No baseline for t.py::test_x (--triton-perf-no-baseline=fail):\n"
        f"  sleepy conc=1 batch=1 grpc (A/B against the reference): no baseline: {why}\n"
        "  -> a model new in this change has no reference: gate it against an SLA until the "
        "reference (--triton-perf-baseline-ref/-repo) has it; or let measurements without a "
        "baseline through with --triton-perf-no-baseline=warn"
    )


def test_the_machines_load_is_in_the_record_and_in_the_stored_run() -> None:
    measured = Measured(make_result(), host_load=LOAD)
    ctx = GateContext(key={"cpu": "x"}, environment={"os": "y"}, store=None)
    (record,) = evaluate_test("t.py::test_x", None, [measured], ctx).records
    assert record.environment == {"key": {"cpu": "x"}, "os": "y", "host_load": LOAD}
    assert baseline_run(record, {"git_commit": "abc"})["host_load"] == LOAD
