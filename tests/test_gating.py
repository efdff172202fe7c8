"""Baselines and regression gating end to end: inner pytest runs over a temporary user
project with its own copy of the `sleepy` model, on real embedded servers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE_MODELS

GATE_TEST = """
import pytest

@pytest.mark.sla(p99_ms=500)
def test_sleepy(triton_perf):
    triton_perf.measure("sleepy")
"""
# Short windows, but enough of them per arm for significance at alpha 0.01; A/B comparisons
# stop when decided, after 25 s at most.
GATE_OPTIONS = (
    "--triton-perf-warmup-s=0.3",
    "--triton-perf-window-s=0.3",
    "--triton-perf-compare-windows=8",
    "--triton-perf-compare-budget-s=25",
    "-p",
    "no:cacheprovider",
)
#: The fixed design (a set number of pairs, one look) in one load of the arms: for tests of
#: the plumbing (where the reference comes from, what the reports say), not of the
#: sequential analysis or the load epochs, whose error bounds the seeded simulations in
#: tests/baseline prove (the epochs end to end: the paired test below).
FIXED = ("--triton-perf-compare-budget-s=0", "--triton-perf-ab-epochs=1")


def set_service_time(project: Path, ms: int) -> None:
    config = project / "models" / "sleepy" / "config.pbtxt"
    text = config.read_text()
    start = text.index('string_value: "') + len('string_value: "')
    end = text.index('"', start)
    config.write_text(text[:start] + str(ms) + text[end:])


def make_project(root: Path) -> Path:
    project = root / "project"
    (project / "models").mkdir(parents=True)
    src = EXAMPLE_MODELS / "sleepy"
    dst = project / "models" / "sleepy"
    (dst / "1").mkdir(parents=True)
    (dst / "config.pbtxt").write_text((src / "config.pbtxt").read_text())
    (dst / "1" / "model.py").write_text((src / "1" / "model.py").read_text())
    (project / "pytest.ini").write_text("[pytest]\ntriton_model_repository = models\n")
    (project / "test_gate.py").write_text(GATE_TEST)
    return project


def git(project: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=project, check=True, capture_output=True)


def commit(project: Path) -> None:
    """The project as the first commit of a new git repository."""
    git(project, "init", "-q")
    git(project, "-c", "user.name=t", "-c", "user.email=t@t", "add", ".")
    git(project, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "20 ms")


def pytest_in(
    project: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", *GATE_OPTIONS, *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
        env=None if env is None else {**os.environ, **env},
    )


def session(name: str) -> dict[str, str]:
    """The environment of an inner run that is a session of its own (whatever CI run the
    outer one belongs to)."""
    return {"TRITON_PERF_SESSION": name}


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """save (20 ms) -> compare (20 ms) -> compare after a config change to 26 ms (+30%),
    twice: each run a session of its own, the first sighting only suspected."""
    project = make_project(tmp_path_factory.mktemp("history"))
    out = project / "out"
    saved = pytest_in(project, "--triton-perf-save", env=session("save"))
    same = pytest_in(project, "--triton-perf-compare", env=session("same"))
    set_service_time(project, 26)
    suspected = pytest_in(project, "--triton-perf-compare", env=session("slower-1"))
    slower = pytest_in(
        project,
        "--triton-perf-compare",
        f"--triton-perf-json={out}/results.json",
        f"--triton-perf-junit={out}/perf-junit.xml",
        f"--triton-perf-markdown={out}/summary.md",
        f"--triton-perf-plots={out}/plots",
        env=session("slower-2"),
    )
    return {
        "project": project,
        "saved": saved,
        "same": same,
        "suspected": suspected,
        "slower": slower,
        "out": out,
    }


def test_save_writes_a_baseline_file(history: dict[str, object]) -> None:
    saved = history["saved"]
    assert isinstance(saved, subprocess.CompletedProcess)
    assert saved.returncode == 0, saved.stdout[-3000:]
    assert "saved 1 baseline run(s)" in saved.stdout
    files = list((history["project"] / ".triton-perf").glob("*/*.json"))  # type: ignore[operator]
    names = sorted(f.name for f in files)
    # suspected.json: the regression the first slower session saw, waiting for a second.
    assert names == [
        "environment.json",
        "suspected.json",
        "test_gate.py_test_sleepy__sleepy_conc=1_batch=1_grpc.json",
    ]
    doc = json.loads(next(f for f in files if f.name.startswith("test_gate")).read_text())
    run = doc["runs"][0]
    assert len(run["result"]["windows"]) >= 8
    assert run["config_hash"] and "date" in run
    assert run["session"] == "save"


def test_compare_with_an_unchanged_model_passes(history: dict[str, object]) -> None:
    same = history["same"]
    assert isinstance(same, subprocess.CompletedProcess)
    assert same.returncode == 0, same.stdout[-3000:]
    assert "regression" not in same.stdout.split("= triton-perf =")[-1].split("\n", 2)[-1][:0]


def test_config_change_slowing_the_model_fails_with_the_regression_screen(
    history: dict[str, object],
) -> None:
    slower = history["slower"]
    assert isinstance(slower, subprocess.CompletedProcess)
    assert slower.returncode == 1, slower.stdout[-3000:]
    text = slower.stdout
    assert "Performance regression in test_gate.py::test_sleepy:" in text
    assert "sleepy conc=1 batch=1 grpc (history)" in text
    line = next(ln for ln in text.splitlines() if ln.strip().startswith("p50_ms") and "%" in ln)
    change = float(line.split("%")[0].split()[-1])
    assert 20 < change < 40, line
    assert "baseline: .triton-perf/" in text and "commit" in text and "config " in text
    assert "confirmed: also seen in an earlier session" in text


def test_a_regression_seen_by_one_session_only_is_suspected_not_failed(
    history: dict[str, object],
) -> None:
    suspected = history["suspected"]
    assert isinstance(suspected, subprocess.CompletedProcess)
    assert suspected.returncode == 0, suspected.stdout[-3000:]
    # p50 (+) or throughput (-): whichever this session saw first.
    assert "suspected regression (" in suspected.stdout
    assert "not yet confirmed" in suspected.stdout


def test_reports_hold_the_figures(history: dict[str, object]) -> None:
    out = history["out"]
    assert isinstance(out, Path)
    doc = json.loads((out / "results.json").read_text())
    (m,) = doc["measurements"]
    assert m["verdict"] == "regression" and m["outcome"] == "failed"
    assert 24 < m["result"]["latency_ms"]["p50"] < 40
    junit = ET.parse(out / "perf-junit.xml")
    names = [c.get("name") for c in junit.iter("testcase")]
    assert any("p50_ms" in (n or "") for n in names)
    assert junit.getroot().iter("failure") is not None
    md = (out / "summary.md").read_text()
    assert "regression" in md and "sleepy" in md
    pngs = list((out / "plots").glob("*.png"))
    assert pngs and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)


def test_ab_mode_against_a_git_revision_detects_the_same_change(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    commit(project)
    set_service_time(project, 26)
    result = pytest_in(project, "--triton-perf-baseline-ref=HEAD", *FIXED)
    assert result.returncode == 1, result.stdout[-3000:]
    assert "sleepy conc=1 batch=1 grpc (A/B against the reference)" in result.stdout
    assert "'sleepy__ref' = 'sleepy' from git revision HEAD" in result.stdout
    # The same revision against itself: A/A does not fail (pass, or inconclusive where the
    # windows could not have seen the minimum effect).
    git(project, "checkout", "-q", "--", ".")
    same = pytest_in(project, "--triton-perf-baseline-ref=HEAD", *FIXED)
    assert same.returncode == 0, same.stdout[-3000:]
    assert "Performance regression" not in same.stdout


def test_ab_mode_pairs_blocks_of_symmetric_arms_and_stops_when_decided(tmp_path: Path) -> None:
    """The paired sequential analysis, end to end: both arms are copies loaded alike, the
    comparison stops at a look once every gated metric is decided, and the results say how
    (method, pairs, time to verdict, the interval of each change)."""
    project = make_project(tmp_path)
    commit(project)
    set_service_time(project, 26)  # +30%: decided at the first looks
    out = project / "out" / "results.json"
    result = pytest_in(
        project,
        "--triton-perf-baseline-ref=HEAD",
        f"--triton-perf-json={out}",
        "--triton-perf-compare-budget-s=60",
    )
    assert result.returncode == 1, result.stdout[-3000:]
    assert "both arms loaded alike, as copies" in result.stdout
    record = json.loads(out.read_text())["measurements"][0]
    design = record["baseline"]["design"]
    assert design["method"] == "paired" and design["stopped"] == "regression"
    # The blocks come in load epochs (--triton-perf-ab-epochs=3, the default): both arms
    # loaded anew, in a random order, and a random arm first in each epoch.
    assert design["epochs"] >= 3 and len(design["pairs_per_epoch"]) == design["epochs"]
    assert len(design["orders"]) == design["epochs"] and isinstance(design["seed"], int)
    # Both arms reloaded at the same time (neither is an ensemble), a random arm first.
    assert all(o.split(", ")[0] == "loaded together" for o in design["orders"][1:])
    assert {o.split(", ")[1] for o in design["orders"]} <= {"A first", "B first"}
    assert design["elapsed_s"] < 66 and design["pairs"] >= 6
    comps = {c["metric"]: c for c in record["comparisons"]}
    # It stops at the first look where a gated metric regressed (p50, the pooled p95, the
    # throughput: whichever interval clears first). The others may still be open then (seen
    # in CI with the other worker busy: throughput decided, p50 not yet).
    regressed = {m: c for m, c in comps.items() if c["verdict"] == "regression"}
    assert regressed, comps
    for m, c in regressed.items():
        low, high = c["change_ci"]
        if m == "throughput":
            assert low < c["change_pct"] < high < 0
        else:
            assert 0 < low < c["change_pct"] < high
    p50 = comps["p50_ms"]
    assert p50["change_pct"] > 10
    assert "load epochs" in p50["note"] and "Pocock" in p50["note"]
    if p50["verdict"] != "regression":
        assert "stopped at a regression of another metric" in p50["note"], p50["note"]


def test_a_slow_models_tail_regression_is_gated_over_pooled_blocks(tmp_path: Path) -> None:
    """sleepy gives about 23 requests per 0.5 s block, far below what a block's own tail
    needs: p95 and p99 are decided over each arm's pooled blocks, once each arm pooled 10
    requests beyond the percentile (p95: 200, p99: 1000). With p50 and throughput off, a
    +50% service time is caught on p95; p99 (1000 requests per arm: about 30 s of this
    model per arm) is reported with its change and why it was not decided."""
    project = make_project(tmp_path)
    commit(project)
    set_service_time(project, 30)
    out = project / "out" / "results.json"
    result = pytest_in(
        project,
        "--triton-perf-baseline-ref=HEAD",
        "--triton-perf-min-effect=p50=off,throughput=off",
        f"--triton-perf-json={out}",
        # 60 s: a bare Debian check ran out of 40 s after 3 load epochs (2 df) with p95
        # +45.6% in [-26%, +188%]; the analysis stops as soon as it is decided.
        "--triton-perf-compare-budget-s=60",
    )
    assert result.returncode == 1, result.stdout[-3000:]
    comps = {c["metric"]: c for c in json.loads(out.read_text())["measurements"][0]["comparisons"]}
    assert "p50_ms" not in comps and "throughput" not in comps
    assert comps["p95_ms"]["verdict"] == "regression", comps["p95_ms"]["note"]
    assert "pooled over blocks" in comps["p95_ms"]["note"]
    assert 25 < comps["p95_ms"]["change_pct"] < 80
    p99 = comps["p99_ms"]
    assert p99["verdict"] in ("regression", "inconclusive")
    if p99["verdict"] == "inconclusive":
        assert "1000 requests (10 beyond the percentile)" in p99["note"]


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (
            "--triton-perf-ab-method=t-test",
            "--triton-perf-ab-method='t-test': 'paired' or 'mann-whitney' is accepted",
        ),
        ("--triton-perf-compare-budget-s=-5", "--triton-perf-compare-budget-s"),
        ("--triton-perf-block-s=0", "--triton-perf-block-s"),
        (
            "--triton-perf-ab-confirm=maybe",
            "--triton-perf-ab-confirm='maybe': 'on' or 'off' is accepted",
        ),
    ],
)
def test_bad_ab_options_are_usage_errors(tmp_path: Path, option: str, message: str) -> None:
    result = pytest_in(make_project(tmp_path), option)
    assert result.returncode == 4
    assert message in result.stderr


def test_unknown_revision_is_a_usage_error(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    result = pytest_in(project, "--triton-perf-baseline-ref=no-such-branch")
    assert result.returncode == 4
    assert "--triton-perf-baseline-ref=no-such-branch: no such commit" in result.stderr


def test_the_inconclusive_policy_warns_in_github_actions_or_fails_the_test(
    tmp_path: Path,
) -> None:
    """3 against 3 windows can never reach alpha 0.01 (the smallest one-sided p is 1/20):
    every window metric is undecided, whatever the machine does."""
    project = make_project(tmp_path)
    commit(project)
    few = (
        "--triton-perf-baseline-ref=HEAD",
        "--triton-perf-ab-method=mann-whitney",
        "--triton-perf-compare-windows=3",
    )
    warned = pytest_in(project, *few, env={"GITHUB_ACTIONS": "true"})
    assert warned.returncode == 0, warned.stdout[-3000:]
    assert (
        "::warning file=test_gate.py,line=4::triton-perf inconclusive: "
        "test_gate.py::test_sleepy sleepy conc=1 batch=1 grpc: p50: underpowered: too few "
        "windows for any change on p50 to reach alpha 0.01" in warned.stdout
    ), warned.stdout[-3000:]
    failed = pytest_in(project, *few, "--triton-perf-inconclusive=fail")
    assert failed.returncode == 1, failed.stdout[-3000:]
    text = failed.stdout
    assert (
        "Undecided performance comparison in test_gate.py::test_sleepy "
        "(--triton-perf-inconclusive=fail):" in text
    )
    assert "p50_ms" in text and "underpowered" in text
    assert "::warning" not in text  # GITHUB_ACTIONS unset


def test_an_unknown_inconclusive_policy_is_a_usage_error(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    result = pytest_in(project, "--triton-perf-inconclusive=maybe")
    assert result.returncode == 4
    assert "--triton-perf-inconclusive='maybe': 'pass', 'warn' or 'fail' is accepted" in (
        result.stderr
    )
