"""Streaming figures through the verdicts and the reports, without a server: SLA checks,
baseline comparisons (history and A/B), and what every report shows."""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pytest_triton_perf import sla
from pytest_triton_perf.baseline.compare import GateSettings, compare_results
from pytest_triton_perf.baseline.paired import PairedAnalysis
from pytest_triton_perf.report.junit import junit_string
from pytest_triton_perf.report.markdown import render_markdown
from pytest_triton_perf.report.terminal import render_terminal
from pytest_triton_perf.verdicts import REGRESSION
from tests.report.factory import make_record, make_result, make_stream_result

STREAM_KEYS = (
    "ttft_p50_ms",
    "ttft_p99_ms",
    "itl_p50_ms",
    "itl_p99_ms",
    "min_responses_per_s",
    "min_output_tokens_per_s",
)


def spec(**bounds: float) -> sla.SlaSpec:
    return sla.merge_markers("t", [((), bounds)]) or sla.SlaSpec(bounds=())


def test_streaming_bounds_check_streaming_results_only() -> None:
    llm, plain = make_stream_result(), make_result()
    bounds = dict.fromkeys(STREAM_KEYS, 1e6) | {"ttft_p99_ms": 30.0}
    bounds |= {"min_responses_per_s": 1.0, "min_output_tokens_per_s": 1.0}
    checks = sla.evaluate(spec(**bounds), [llm, plain])
    mine = {c.key: c for c in checks if c.measurement == sla.label(llm)}
    assert set(STREAM_KEYS) <= set(mine)
    assert not mine["ttft_p99_ms"].passed  # TTFT is about 40 ms
    assert mine["ttft_p99_ms"].value == llm.ttft_ms.p99  # type: ignore[union-attr]
    assert all(mine[k].passed for k in STREAM_KEYS if k != "ttft_p99_ms")
    # A request/response model beside it is not checked on them.
    assert {c.key for c in checks if c.measurement == sla.label(plain)} == {"max_error_rate"}


def test_a_streaming_bound_on_a_test_without_a_streaming_model_fails_saying_so() -> None:
    (check,) = [c for c in sla.evaluate(spec(itl_p99_ms=20), [make_result()]) if not c.passed]
    assert check.measurement == "(no streaming model)"
    assert "itl_p99_ms, a figure of streaming (decoupled) models" in check.note
    assert "sleepy: one response per request" in check.note


def test_uncounted_tokens_fail_a_token_bound_with_what_to_do() -> None:
    llm = make_stream_result(token_output=None)
    llm = dataclasses.replace(llm, unavailable=(("output_tokens_per_s", "no"),))
    (check,) = [c for c in sla.evaluate(spec(min_output_tokens_per_s=10), [llm]) if not c.passed]
    assert check.value is None and check.note == "unavailable: no"


def test_history_compares_ttft_and_itl_of_streaming_results_only() -> None:
    base = [make_stream_result(seed=s).to_dict() for s in (1, 2, 3)]
    gate = GateSettings()
    slower = make_stream_result(seed=4, itl_ms=13.0).to_dict()
    comps = {c.metric: c for c in compare_results(base, slower, gate, mode="history")}
    assert {"ttft_p50_ms", "ttft_p99_ms", "itl_p50_ms", "itl_p99_ms"} <= set(comps)
    assert comps["itl_p50_ms"].verdict == REGRESSION
    assert 20 < (comps["itl_p50_ms"].change_pct or 0) < 40
    assert comps["ttft_p50_ms"].verdict != REGRESSION
    plain = [make_result(seed=s).to_dict() for s in (1, 2, 3)]
    metrics = {
        c.metric
        for c in compare_results(plain, make_result(seed=4).to_dict(), gate, mode="history")
    }
    assert not metrics & {"ttft_p50_ms", "ttft_p99_ms", "itl_p50_ms", "itl_p99_ms"}


def test_the_paired_analysis_decides_ttft_and_itl_of_streaming_blocks() -> None:
    ref = [make_stream_result(seed=s, windows=1) for s in range(1, 9)]
    cand = [make_stream_result(seed=s, windows=1, ttft_ms=60.0) for s in range(11, 19)]
    analysis = PairedAnalysis(GateSettings(), looks=(8,))
    analysis.look(ref, cand)
    assert "ttft_p50_ms" in analysis.metrics and "itl_p99_ms" in analysis.metrics
    comps = {
        c.metric: c
        for c in analysis.comparisons(ref, cand, pairs=8, elapsed_s=8.0, stopped="decided")
    }
    assert comps["ttft_p50_ms"].verdict == REGRESSION
    assert "pooled over blocks" in comps["itl_p99_ms"].note
    plain = PairedAnalysis(GateSettings(), looks=(8,))
    plain.look([make_result(seed=1)] * 2, [make_result(seed=2)] * 2)
    assert "ttft_p50_ms" not in plain.metrics


def test_every_report_shows_the_streaming_figures(tmp_path: Path) -> None:
    llm = make_stream_result()
    record = make_record(llm, test="test_gate.py::test_llm")
    plain = make_record(make_result(), test="test_gate.py::test_plain")
    lines = render_terminal([record, plain])
    (line,) = [x for x in lines if x.startswith("streaming:")]
    assert line.startswith("streaming: llm conc=4 batch=1 grpc: TTFT p50 ")
    assert "responses/request" in line and "tokens/s" in line
    md = render_markdown([record, plain])
    section = md.split("### Streaming", 1)[1]
    assert "| `test_gate.py::test_llm` | llm | conc=4 batch=1 grpc |" in section
    assert "test_plain" not in section
    root = ET.fromstring(junit_string([record]))
    props = {p.get("name"): p.get("value") for p in root.iter("property")}
    assert float(props["ttft_p50_ms"]) == pytest.approx(llm.ttft_ms.p50, rel=1e-5)  # type: ignore[union-attr]
    assert "itl_p99_ms" in props and "output_tokens_per_s" in props
    assert record.to_dict()["stream_histograms"]["ttft_ms"]["counts"]


def test_plots_draw_ttft_and_itl_distributions(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from pytest_triton_perf.report.plots import write_plots

    llm = make_stream_result()
    base = make_stream_result(seed=9, itl_ms=8.0)
    record = make_record(
        llm,
        test="test_gate.py::test_llm",
        baseline={
            "mode": "ab",
            "status": "compared",
            "stream_histograms": make_record(base).stream_histograms,
        },
    )
    written = write_plots(tmp_path, [record, make_record(make_result())])
    names = sorted(p.name for p in written)
    assert "stream-test_gate.py_test_llm-0.png" in names
    assert not any(n.startswith("stream-") and "test_pass" in n for n in names)
    png = tmp_path / "stream-test_gate.py_test_llm-0.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
