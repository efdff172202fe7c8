"""A pipeline gated end to end: inner pytest runs over a temporary project holding copies of
the example ensemble `pipeline` and its steps `scale` and `sleepy`. A baseline is saved; a
configuration change slows `scale` alone; the comparison fails and names that step in the
failure screen, the terminal's -v table, the Markdown summary and the JSON results."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE_MODELS
from tests.test_gating import FIXED, commit, pytest_in, session

PIPELINE_TEST = """
import pytest

@pytest.mark.sla(p99_ms=500)
def test_pipeline(triton_perf):
    result = triton_perf.measure("pipeline")
    assert [s.model for s in result.pipeline.steps] == ["scale", "sleepy"]
"""


def set_parameter(project: Path, model: str, ms: int) -> None:
    """The one ``string_value`` parameter of ``model``'s configuration (delay_ms /
    service_time_ms), set to ``ms``."""
    config = project / "models" / model / "config.pbtxt"
    text = config.read_text()
    start = text.index('string_value: "') + len('string_value: "')
    end = text.index('"', start)
    config.write_text(text[:start] + str(ms) + text[end:])


def pipeline_project(root: Path) -> Path:
    """A user project under ``root`` with copies of the example ensemble and its steps,
    `sleepy` at 4 ms (a short pipeline: many requests per window), and PIPELINE_TEST."""
    project = root / "project"
    for model in ("pipeline", "scale", "sleepy"):
        shutil.copytree(
            EXAMPLE_MODELS / model,
            project / "models" / model,
            ignore=shutil.ignore_patterns("__pycache__"),
        )
    set_parameter(project, "sleepy", 4)
    (project / "pytest.ini").write_text("[pytest]\ntriton_model_repository = models\n")
    (project / "test_gate.py").write_text(PIPELINE_TEST)
    return project


@pytest.fixture(scope="module")
def slowed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """save -> slow `scale` by 8 ms per execution -> compare (another session: the
    regression is suspected, its note names the step; a second session would confirm it, as
    tests/test_gating.py shows)."""
    project = pipeline_project(tmp_path_factory.mktemp("pipeline"))
    out = project / "out"
    # A change of +8 ms on 5 ms is decided by 5 windows a side (Mann-Whitney's smallest
    # one-sided p with 5 against 5 is 1/252).
    short = ("--triton-perf-compare-windows=5", "--triton-perf-window-s=0.25")
    saved = pytest_in(project, "--triton-perf-save", *short, env=session("save"))
    set_parameter(project, "scale", 8)
    compared = pytest_in(
        project,
        *short,
        "--triton-perf-compare",
        "-v",
        f"--triton-perf-json={out}/results.json",
        f"--triton-perf-markdown={out}/summary.md",
        env=session("first"),
    )
    return {"saved": saved, "compared": compared, "out": out}


def test_the_regression_names_the_slowed_step(slowed: dict[str, object]) -> None:
    saved, compared = slowed["saved"], slowed["compared"]
    assert isinstance(saved, subprocess.CompletedProcess)
    assert isinstance(compared, subprocess.CompletedProcess)
    assert saved.returncode == 0, saved.stdout[-3000:]
    assert compared.returncode == 0, compared.stdout[-3000:]  # suspected, not yet failed
    text = compared.stdout
    notes = [ln for ln in text.splitlines() if "suspected regression (" in ln]
    assert notes, text[-3000:]
    note = next((ln for ln in notes if "located in step" in ln), notes[0])
    assert "located in step 'scale': server time" in note
    assert "mostly compute infer" in note
    assert "step 'sleepy'" not in note


def test_the_reports_show_the_steps(slowed: dict[str, object]) -> None:
    compared = slowed["compared"]
    assert isinstance(compared, subprocess.CompletedProcess)
    lines = compared.stdout.splitlines()
    title = next(i for i, ln in enumerate(lines) if ln.startswith("pipeline: test_gate.py::"))
    assert lines[title].endswith("ensemble of 2 steps (from its configuration)")
    assert lines[title + 1].split()[:3] == ["step", "requests", "per"]
    assert [lines[title + 2].split()[0], lines[title + 3].split()[0]] == ["scale", "sleepy"]
    out = slowed["out"]
    assert isinstance(out, Path)
    markdown = (out / "summary.md").read_text()
    assert "### Pipelines" in markdown and "| scale |" in markdown
    assert "located in step 'scale'" in markdown
    (record,) = json.loads((out / "results.json").read_text())["measurements"]
    steps = record["result"]["pipeline"]["steps"]
    assert [s["model"] for s in steps] == ["scale", "sleepy"]
    assert steps[0]["server"]["compute_infer_ms"] >= 6  # the 8 ms delay, on a busy machine


def test_an_ab_comparison_of_a_pipeline_sees_a_change_in_one_step(tmp_path: Path) -> None:
    """A/B mode against the committed revision: each arm of the ensemble runs its own
    copies of the composing models (the reference's `scale` as committed, the candidate's
    as changed), so a change in one step alone is a regression of the pipeline, located in
    that step; the result and the reference report the steps under their own names."""
    project = pipeline_project(tmp_path)
    commit(project)
    set_parameter(project, "scale", 8)
    out = project / "out" / "results.json"
    result = pytest_in(
        project, "--triton-perf-baseline-ref=HEAD", f"--triton-perf-json={out}", *FIXED
    )
    assert result.returncode == 1, result.stdout[-3000:]
    assert "Performance regression in" in result.stdout, result.stdout[-4000:]
    screen = result.stdout[result.stdout.index("Performance regression in") :]
    assert "-> located in step 'scale'" in screen, screen[:3000]
    (record,) = json.loads(out.read_text())["measurements"]
    assert "its own copies of its composing models" in record["baseline"]["note"]
    for side in (record["result"], record["baseline"]["reference"]):
        assert [s["model"] for s in side["pipeline"]["steps"]] == ["scale", "sleepy"]
    ref_scale, cand_scale = (
        side["pipeline"]["steps"][0]["server"]["compute_infer_ms"]
        for side in (record["baseline"]["reference"], record["result"])
    )
    assert cand_scale - ref_scale > 5  # the 8 ms delay is in the candidate's step only
