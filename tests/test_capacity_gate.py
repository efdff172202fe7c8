"""Capacity as a gate, end to end: inner pytest runs over a user project with its own copy
of `sleepy` (20 ms per execution, one instance: 50 inferences/s), on real embedded servers.
The `min_capacity` marker key, its usage errors, and capacity baselines in history and A/B
modes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.test_gating import FIXED, make_project, pytest_in, session, set_service_time

CAPACITY_TESTS = """
import pytest

@pytest.mark.sla(p99_ms=150, min_capacity=35)
def test_capacity_met(triton_perf):
    found = triton_perf.capacity("sleepy")
    assert found.capacity > 35 and found.load >= 1
    assert found.steps and found.limited_by in ("plateau", "p99_ms")

@pytest.mark.sla(p99_ms=150, min_capacity=80)
def test_capacity_too_low(triton_perf):
    triton_perf.capacity("sleepy")

@pytest.mark.sla(p99_ms=150, min_capacity=10)
def test_no_search(triton_perf):
    triton_perf.measure("sleepy")

def test_bounds_without_a_marker(triton_perf):
    found = triton_perf.capacity("sleepy", bounds={"perf_latency_p99": 150}, limit=2)
    assert found.bounds["p99_ms"] == 150 and found.limited_by == "limit"
"""

NO_LATENCY = """
import pytest

@pytest.mark.sla(min_capacity=10)
def test_capacity(triton_perf):
    triton_perf.capacity("sleepy")
"""

GATED = """
import pytest

@pytest.mark.sla(p99_ms=150)
def test_capacity(triton_perf):
    triton_perf.capacity("sleepy")
"""


@pytest.fixture(scope="module")
def plain(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    project = make_project(tmp_path_factory.mktemp("capacity"))
    (project / "test_gate.py").write_text(CAPACITY_TESTS)
    out = project / "results.json"
    run = pytest_in(project, "-v", f"--triton-perf-json={out}", "-rA")
    return out, run


def test_min_capacity_passes_and_fails_on_the_searched_capacity(
    plain: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    out, run = plain
    assert run.returncode == 1, run.stdout[-3000:]
    assert "PASSED test_gate.py::test_capacity_met" in run.stdout
    assert "PASSED test_gate.py::test_bounds_without_a_marker" in run.stdout
    assert "FAILED test_gate.py::test_capacity_too_low" in run.stdout
    assert "min_capacity" in run.stdout and ">= 80" in run.stdout
    doc = json.loads(out.read_text())
    by_test = {r["test"].split("::")[-1]: r for r in doc["measurements"]}
    met = by_test["test_capacity_met"]
    assert met["label"] == "sleepy capacity over concurrency batch=1 grpc"
    assert met["result"]["capacity"] == pytest.approx(50, rel=0.2)
    search = met["analysis"]["capacity"]
    assert search["kind"] == "capacity" and search["steps"]
    assert search["capacity"] == met["result"]["capacity"]
    # The latency bounds hold at the level it settled on, by construction.
    assert all(s["passed"] for s in met["sla"])


def test_min_capacity_without_a_search_fails_saying_so(
    plain: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    _, run = plain
    assert "FAILED test_gate.py::test_no_search" in run.stdout
    assert "the sla bounds min_capacity but the test ran no triton_perf.capacity() search" in (
        run.stdout
    )


def test_min_capacity_without_a_latency_bound_is_a_usage_error(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    (project / "test_gate.py").write_text(NO_LATENCY)
    run = pytest_in(project)
    assert run.returncode == 4, run.stdout[-2000:] + run.stderr[-2000:]
    text = run.stdout + run.stderr
    assert "sla(min_capacity=10) without a latency bound" in text
    assert "Triton" not in text.split("without a latency bound")[0].splitlines()[-1]


def test_history_mode_stores_and_compares_the_capacity(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    (project / "test_gate.py").write_text(GATED)
    saved = pytest_in(project, "--triton-perf-save", env=session("save"))
    assert saved.returncode == 0, saved.stdout[-3000:]
    files = [f for f in (project / ".triton-perf").glob("*/*.json") if f.name != "environment.json"]
    assert [f.name for f in files] == [
        "test_gate.py_test_capacity__sleepy_capacity_over_concurrency_batch=1_grpc.json"
    ]
    stored = json.loads(files[0].read_text())["runs"][0]["result"]
    assert stored["capacity"] > 30 and len(stored["windows"]) >= 8
    set_service_time(project, 40)  # half the capacity
    out = project / "results.json"
    # One session that sees the regression only suspects it (a second session confirms it:
    # tests/test_gating.py runs both); the test is not failed, the comparison says why.
    first = pytest_in(
        project, "--triton-perf-compare", f"--triton-perf-json={out}", env=session("first")
    )
    assert first.returncode == 0, first.stdout[-3000:]
    assert "suspected regression" in first.stdout, first.stdout[-3000:]
    record = json.loads(out.read_text())["measurements"][0]
    comps = {c["metric"]: c for c in record["comparisons"]}
    # A capacity result is compared on its capacity (and errors), not on latency at a level
    # that may differ between runs.
    assert set(comps) == {"capacity", "error_rate"}
    capacity = comps["capacity"]
    assert capacity["verdict"] == "inconclusive"
    assert capacity["note"].startswith("suspected regression (")
    assert capacity["change_pct"] == pytest.approx(-50, abs=15)
    suspected = json.loads((files[0].parent / "suspected.json").read_text())
    assert suspected[files[0].name]["capacity"]["verdict"] == "regression"


def test_ab_mode_searches_once_and_compares_two_levels(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    (project / "test_gate.py").write_text(GATED)
    reference = tmp_path / "reference"
    import shutil

    shutil.copytree(project / "models", reference)
    set_service_time(project, 40)  # the candidate: half the reference's capacity
    out = project / "results.json"
    run = pytest_in(
        project, f"--triton-perf-baseline-repo={reference}", f"--triton-perf-json={out}", *FIXED
    )
    assert run.returncode == 1, run.stdout[-3000:]
    record = json.loads(out.read_text())["measurements"][0]
    comps = {c["metric"]: c for c in record["comparisons"]}
    assert comps["capacity"]["verdict"] == "regression", comps["capacity"]
    assert comps["capacity"]["change_pct"] == pytest.approx(-50, abs=15)
    levels = record["baseline"]["design"]["capacity_levels"]
    assert set(levels) == {"load", "above"}
    assert levels["above"]["level"] > levels["load"]["level"]
    # One search, on the reference only.
    search = record["analysis"]["capacity"]
    assert search["model"] == "sleepy" and search["capacity"] == pytest.approx(50, rel=0.2)


DRIFT = """
import pytest

SPACE = {"dynamic_batching": [False, True]}

@pytest.mark.sla(p99_ms=300, max_config_gap=0.15)
def test_drift(triton_perf):
    found = triton_perf.search("sleepy", SPACE, objective="throughput", concurrency=4)
    assert found.best.values == {"dynamic_batching": True}

@pytest.mark.sla(p99_ms=300, max_config_gap=10)
def test_no_drift_within_a_wide_gap(triton_perf):
    triton_perf.search("sleepy", SPACE, objective="throughput", concurrency=4)

@pytest.mark.sla(p99_ms=300, max_config_gap=0.15)
def test_gap_without_search(triton_perf):
    triton_perf.measure("sleepy")
"""


def test_the_drift_gate_fails_naming_the_better_configuration(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    (project / "test_gate.py").write_text(DRIFT)
    out = project / "results.json"
    run = pytest_in(project, "-rA", f"--triton-perf-json={out}")
    assert run.returncode == 1, run.stdout[-3000:]
    assert "FAILED test_gate.py::test_drift" in run.stdout
    assert "PASSED test_gate.py::test_no_drift_within_a_wide_gap" in run.stdout
    assert "FAILED test_gate.py::test_gap_without_search" in run.stdout
    assert "sets max_config_gap=0.15 but the test ran no triton_perf.search()" in run.stdout
    drift = run.stdout[run.stdout.index("Configuration drift in test_gate.py::test_drift") :]
    assert "the best configuration found, sleepy__cfg1 (dynamic_batching=True)" in drift
    assert "on throughput (max_config_gap 15%)" in drift
    assert "+dynamic_batching {" in drift  # the config.pbtxt diff
    doc = json.loads(out.read_text())
    search = next(m for m in doc["measurements"] if m["test"].endswith("test_drift"))
    found = search["analysis"]["search"]
    assert found["best"] == "sleepy__cfg1" and found["committed"] == "sleepy__cfg0"
    # Up to four requests per 20 ms batch against one: about +100% to +300% on throughput,
    # by how full the batches get on a busy machine (0.99 was seen on a quiet one, and in the
    # code before the gate pipeline too), far beyond the 15% gap either way.
    assert found["gap"] > 0.5
    assert "dynamic_batching" in found["best_config_pbtxt"]
