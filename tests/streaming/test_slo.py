"""Per-request SLOs and goodput, TPOT and end-to-end latency, without a server: records built
with known delays, half of the requests slow by construction."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from pytest_triton_perf import PerfResult, sla
from pytest_triton_perf.baseline import compare
from pytest_triton_perf.baseline.ab import merge_blocks
from pytest_triton_perf.baseline.paired import PairedAnalysis
from pytest_triton_perf.errors import InputSpecError
from pytest_triton_perf.load.model_spec import ModelSpec
from pytest_triton_perf.measure.checks import check_slo
from pytest_triton_perf.measure.figures import wilson_interval
from pytest_triton_perf.report.streaming import stream_line, stream_row
from pytest_triton_perf.verdicts import PASS, REGRESSION, Comparison
from tests.report.factory import make_record, make_stream_result

TTFT_MS, FAST_MS, SLOW_MS, RESPONSES = 40.0, 10.0, 30.0, 16
#: Fast requests meet these SLOs, slow ones miss the TPOT bound and the end-to-end one.
SLO = {"ttft_ms": 100.0, "tpot_ms": 20.0, "e2e_ms": 350.0}


def half_slow(**kwargs: Any) -> PerfResult:
    return make_stream_result(
        ttft_ms=TTFT_MS, itl_ms=FAST_MS, slow_itl_ms=SLOW_MS, responses=RESPONSES, **kwargs
    )


def test_tpot_e2e_attainment_and_goodput_match_the_construction() -> None:
    r = half_slow(slo=SLO)
    assert r.tpot_ms is not None and r.e2e_ms is not None and r.ttft_ms is not None
    # TPOT of a request is its mean gap: 10 ms for fast ones, 30 ms for slow ones.
    assert r.tpot_ms.min == pytest.approx(FAST_MS, rel=0.1)
    assert r.tpot_ms.max == pytest.approx(SLOW_MS, rel=0.1)
    assert r.tpot_ms.avg == pytest.approx((FAST_MS + SLOW_MS) / 2, rel=0.1)
    # The last response ends each constructed request: end-to-end is its latency.
    assert r.latency_ms is not None and r.e2e_ms.p50 == r.latency_ms.p50
    assert r.e2e_ms.max == pytest.approx(TTFT_MS + (RESPONSES - 1) * SLOW_MS, rel=0.1)
    assert r.slo_attainment == pytest.approx(0.5, abs=0.1)
    low, high = r.slo_attainment_interval
    assert low < r.slo_attainment < high and high - low < 0.3
    throughput = r.requests / r.duration_s
    assert r.goodput == pytest.approx(r.slo_attainment * throughput)
    assert r.goodput == pytest.approx(0.5 * throughput, rel=0.2)
    # Slow requests miss TPOT and end-to-end, no request misses TTFT.
    missed = dict(r.slo.missed)
    assert missed["ttft_ms"] == 0 and missed["tpot_ms"] == r.requests - r.slo.met
    # Each window counts its own requests.
    assert all(w.slo_attainment == pytest.approx(0.5, abs=0.2) for w in r.windows)
    assert all(w.tpot_ms is not None and w.e2e_ms is not None for w in r.windows)


def test_failed_requests_count_as_missing_the_slos() -> None:
    r = half_slow(slo={"ttft_ms": 100.0}, errors_every=4)
    assert r.errors > 0 and r.slo is not None
    assert r.slo.requests == r.requests and r.slo.met == r.requests - r.errors
    assert r.summary()["slo_attainment"] == pytest.approx(1 - r.error_rate)


def test_the_figures_travel_through_the_results_json() -> None:
    r = half_slow(slo=SLO)
    d = json.loads(json.dumps(r.to_dict()))
    assert d["tpot_ms"]["p99"] == r.tpot_ms.p99 and d["e2e_ms"]["p50"] == r.e2e_ms.p50
    assert d["slo"]["slo"] == SLO and d["slo"]["met"] == r.slo.met
    assert d["slo_attainment"] == r.slo_attainment and d["goodput"] == r.goodput
    assert d["windows"][0]["goodput"] == r.windows[0].goodput
    for name in ("tpot_p99_ms", "e2e_p99_ms", "goodput", "slo_attainment"):
        assert compare.window_values(d, name), name


def test_an_arm_of_blocks_pools_its_requests() -> None:
    blocks = [half_slow(slo=SLO, seed=s, windows=1) for s in (1, 2, 3)]
    arm = merge_blocks(blocks)
    assert arm.slo is not None and arm.tpot_ms is not None
    assert arm.slo.met == sum(b.slo.met for b in blocks)
    assert arm.slo.requests == sum(b.slo.requests for b in blocks)
    assert arm.tpot_ms.count == sum(b.tpot_ms.count for b in blocks)
    assert arm.goodput == pytest.approx(arm.slo.met / arm.duration_s)


def test_comparisons_decide_goodput_only_where_slos_were_stated() -> None:
    """History mode compares goodput and SLO attainment window by window where the runs
    state SLOs; A/B mode decides them only when every block has them."""
    gate = compare.GateSettings()
    with_slo = [half_slow(slo=SLO, seed=s).to_dict() for s in (1, 2)]
    plain = [half_slow(seed=s).to_dict() for s in (1, 2)]

    def judge(base: dict, current: dict):  # type: ignore[no-untyped-def]
        def one(metric: str) -> Comparison:
            if metric not in ("goodput", "slo_attainment"):
                return Comparison(metric, PASS, "history")  # not what this test is about
            runs = [compare.window_values(base, metric)]
            now = compare.window_values(current, metric)
            return compare.compare_runs(metric, runs, now, gate, mode="history", window_s=2.0)

        return one

    decided = compare.compare_results(
        with_slo[:1], with_slo[1], gate, mode="history", judge=judge(*with_slo)
    )
    by_metric = {c.metric: c for c in decided}
    assert {"goodput", "slo_attainment", "tpot_p99_ms", "e2e_p99_ms"} <= set(by_metric)
    # Same construction, other seed: no regression of goodput.
    assert by_metric["goodput"].verdict != REGRESSION and by_metric["goodput"].current
    decided = compare.compare_results(
        plain[:1], plain[1], gate, mode="history", judge=judge(*plain)
    )
    assert "goodput" not in {c.metric for c in decided}
    analysis = PairedAnalysis(gate=gate, looks=(4,))
    analysis.look(*[[half_slow(seed=s, windows=1)] for s in (1, 2)])
    assert "goodput" not in analysis.metrics and "tpot_p99_ms" in analysis.metrics
    analysis.look(*[[half_slow(slo=SLO, seed=s, windows=1)] for s in (1, 2)])
    assert "goodput" in analysis.metrics and "slo_attainment" in analysis.metrics


def test_a_goodput_breach_names_the_slos_missed_most() -> None:
    r = half_slow(slo=SLO)
    spec = sla.SlaSpec(bounds=(("min_goodput", 1000.0), ("min_slo_attainment", 0.9)))
    checks = sla.evaluate(spec, [r])
    text = sla.failure_text("test_llm", checks)
    failed = [c for c in checks if not c.passed]
    assert {c.key for c in failed} == {"min_goodput", "min_slo_attainment"}
    assert "SLOs missed most: tpot_ms <= 20 missed by " in text
    assert "ttft_ms <= 100 by 0.0%" in text
    # Without SLOs a goodput bound cannot hold, and says what to do (the engine's reason).
    plain = dataclasses.replace(
        make_stream_result(), unavailable=(("goodput", "no per-request SLOs were given"),)
    )
    (check,) = [c for c in sla.evaluate(spec, [plain]) if c.key == "min_goodput"]
    assert not check.passed and check.note == "unavailable: no per-request SLOs were given"


def test_reports_show_tpot_e2e_and_goodput() -> None:
    record = make_record(half_slow(slo=SLO))
    line = stream_line(record)
    assert "; TPOT p50 " in line and "; E2E p50 " in line and "; SLO attainment " in line
    assert "goodput " in line and line.endswith(" requests/s")
    row = stream_row(record)
    assert row[-2].endswith("]") and row[-2].count("%") == 1
    plain = stream_line(make_record(make_stream_result()))
    assert "TPOT p50 " in plain and "SLO attainment" not in plain


def test_wilson_interval() -> None:
    low, high = wilson_interval(50, 100)
    assert low == pytest.approx(0.4038, abs=1e-3) and high == pytest.approx(0.5962, abs=1e-3)
    assert wilson_interval(0, 10)[0] == 0.0
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0)
    assert wilson_interval(0, 0) is None


STREAMING = ModelSpec("llm", None, 0, (), (), decoupled=True)


@pytest.mark.parametrize(
    ("slo", "message"),
    [
        ({}, "slo={} is not a mapping of SLOs; give one or more of ttft_ms, tpot_ms, e2e_ms"),
        ({"itl_ms": 5}, "slo key 'itl_ms' is not an SLO; accepted: ttft_ms, tpot_ms, e2e_ms"),
        ({"ttft_ms": 0}, "slo ttft_ms=0 is not a number of milliseconds > 0"),
        ({"tpot_ms": "fast"}, "slo tpot_ms='fast' is not a number of milliseconds > 0"),
        ({"e2e_ms": True}, "slo e2e_ms=True is not a number of milliseconds > 0"),
        (200, "slo=200 is not a mapping of SLOs"),
    ],
)
def test_bad_slos_say_what_is_accepted(slo: object, message: str) -> None:
    with pytest.raises(InputSpecError, match="^model 'llm': " + message.replace("(", r"\(")):
        check_slo(STREAMING, slo)


def test_slos_bound_streaming_models_only() -> None:
    assert check_slo(STREAMING, {"ttft_ms": 200, "tpot_ms": 50.5}) == (
        ("ttft_ms", 200.0),
        ("tpot_ms", 50.5),
    )
    assert check_slo(STREAMING, None) == ()
    with pytest.raises(InputSpecError, match="not decoupled"):
        check_slo(ModelSpec("mlp", None, 8, (), ()), {"ttft_ms": 200})
