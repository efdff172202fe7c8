"""Streaming models as a gate, end to end: inner pytest runs over a user project with its
own copy of `llm` (and `sleepy`), on real embedded servers. SLA keys on TTFT, ITL and
tokens/s with the reports that show them, and an A/B comparison that catches a TTFT
regression made by a config change."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import EXAMPLE_MODELS
from tests.test_gating import commit, make_project, pytest_in

STREAM_TESTS = """
import pytest

@pytest.mark.sla(ttft_p99_ms=300, itl_p50_ms=30, min_output_tokens_per_s=100,
                 tpot_p99_ms=30, min_slo_attainment=0.9)
def test_llm(triton_perf):
    triton_perf.measure("llm", concurrency=4, token_output="TOKEN",
                        slo={"ttft_ms": 1000, "tpot_ms": 100})

@pytest.mark.sla(ttft_p50_ms=20, min_goodput=1000)
def test_llm_too_slow(triton_perf):
    triton_perf.measure("llm", concurrency=2, slo={"ttft_ms": 20, "tpot_ms": 50})

@pytest.mark.sla(itl_p99_ms=50)
def test_not_streaming(triton_perf):
    triton_perf.measure("sleepy")
"""

AB_TEST = """
import pytest

@pytest.mark.sla(ttft_p99_ms=1000)
def test_llm(triton_perf):
    triton_perf.measure("llm", concurrency=8)
"""


def with_llm(root: Path, first_token_ms: int = 40) -> Path:
    """A user project with `sleepy` and a copy of `llm` (first token after ``first_token_ms``)."""
    project = make_project(root)
    dst = project / "models" / "llm"
    (dst / "1").mkdir(parents=True)
    config = (EXAMPLE_MODELS / "llm" / "config.pbtxt").read_text()
    old = 'key: "first_token_ms" value: { string_value: "40" }'
    assert old in config
    new = f'key: "first_token_ms" value: {{ string_value: "{first_token_ms}" }}'
    (dst / "config.pbtxt").write_text(config.replace(old, new))
    (dst / "1" / "model.py").write_text((EXAMPLE_MODELS / "llm" / "1" / "model.py").read_text())
    return project


def test_streaming_sla_keys_gate_and_every_report_shows_them(tmp_path: Path) -> None:
    project = with_llm(tmp_path)
    (project / "test_gate.py").write_text(STREAM_TESTS)
    out = project / "out"
    run = pytest_in(
        project,
        "-rA",
        f"--triton-perf-json={out}/results.json",
        f"--triton-perf-markdown={out}/summary.md",
        f"--triton-perf-junit={out}/junit.xml",
    )
    text = run.stdout
    assert run.returncode == 1, text[-3000:]
    assert "PASSED test_gate.py::test_llm" in text
    assert "SLA breached in test_gate.py::test_llm_too_slow: 2 of 3 checks failed" in text
    screen = text.split("test_llm_too_slow: 2 of 3")[1].split("\n\n")[0]
    assert "ttft_p50_ms" in screen and "min_goodput" in screen
    # Every request misses the TTFT SLO (40 ms > 20 ms), none the TPOT one (10 ms).
    assert "-> SLOs missed most: ttft_ms <= 20 missed by 100.0% of " in screen
    assert "requests, tpot_ms <= 50 by 0.0%" in screen
    # A streaming key on a test that measured no streaming model fails, saying why.
    assert "FAILED test_gate.py::test_not_streaming" in text
    assert "(no streaming model)" in text and "sleepy: one response per request" in text
    assert "streaming: llm conc=4 batch=1 grpc: TTFT p50 " in text
    assert "; TPOT p50 " in text and "; SLO attainment 100.0% [" in text
    doc = json.loads((out / "results.json").read_text())
    llm = next(r for r in doc["measurements"] if r["test"].endswith("::test_llm"))
    assert llm["result"]["streaming"] is True
    assert 36 < llm["result"]["ttft_ms"]["p50"] < 44
    assert llm["result"]["responses_per_request"] == 16
    assert {s["key"] for s in llm["sla"]} >= {
        "ttft_p99_ms",
        "itl_p50_ms",
        "min_output_tokens_per_s",
        "tpot_p99_ms",
        "min_slo_attainment",
    }
    assert llm["stream_histograms"]["itl_ms"]["counts"]
    assert all(w["ttft_ms"] and w["itl_ms"] for w in llm["result"]["windows"])
    assert 9 < llm["result"]["tpot_ms"]["p50"] < 11 and llm["result"]["e2e_ms"]["p99"]
    assert llm["result"]["slo_attainment"] == 1.0 and llm["result"]["goodput"] > 0
    assert all(w["goodput"] > 0 for w in llm["result"]["windows"])
    assert "### Streaming" in (out / "summary.md").read_text()
    assert 'name="ttft_p99_ms"' in (out / "junit.xml").read_text()
    assert 'name="goodput"' in (out / "junit.xml").read_text()
    assert "SLO attainment" in (out / "summary.md").read_text()


def test_ab_mode_catches_a_ttft_regression_of_a_config_change(tmp_path: Path) -> None:
    project = with_llm(tmp_path)
    (project / "test_gate.py").write_text(AB_TEST)
    commit(project)
    # +50% TTFT, same ITL: with no calibration, 3 epochs give the offset 2 degrees of
    # freedom (c about 23 at a 1.3% se), so +30% sat at the edge (a bare run read +27.8%,
    # interval [-4.9%, +72%]).
    slower = with_llm(tmp_path / "slower", first_token_ms=60)
    config = project / "models" / "llm" / "config.pbtxt"
    config.write_text((slower / "models" / "llm" / "config.pbtxt").read_text())
    out = project / "out" / "results.json"
    run = pytest_in(
        project,
        "--triton-perf-baseline-ref=HEAD",
        "--triton-perf-ab-confirm=off",
        f"--triton-perf-json={out}",
    )
    assert run.returncode == 1, run.stdout[-3000:]
    assert "Performance regression in test_gate.py::test_llm" in run.stdout
    record = json.loads(out.read_text())["measurements"][0]
    comps = {c["metric"]: c for c in record["comparisons"]}
    assert comps["ttft_p50_ms"]["verdict"] == "regression", comps["ttft_p50_ms"]["note"]
    assert 35 < comps["ttft_p50_ms"]["change_pct"] < 65
    # The gaps between tokens did not change: ITL is no regression.
    assert comps["itl_p50_ms"]["verdict"] != "regression"
    assert record["baseline"]["stream_histograms"]["ttft_ms"]["counts"]
    assert record["baseline"]["design"]["stopped"] == "regression"
