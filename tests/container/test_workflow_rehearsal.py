"""Rehearsal of `.github/workflows/perf-gate.yml`: its jobs' own steps, read from the YAML,
run here against the private Docker engine and the CPU Triton image: each entry of the gate's
matrix (one shard of the tests each, in a fresh checkout as on its own runner), then the merge
job over the shards' uploaded artifacts.

A workflow edit that would break the gate on the GPU runners breaks these tests: the image
step builds the gate image
from the workflow's own Dockerfile, the baseline step picks the arguments (A/B against the
merge base for a pull request, against the branch's head before the push for a push to the
default branch), the gate step runs its `pytest` command for its shard, each shard's upload
must hold its results (and, on the default branch, its copy of the history with the runs it
saved), the merge job merges them into one report whose files must exist under its upload's
path, and on the default branch it commits the merged history and pushes it (to a local bare
"origin").

What this machine cannot do as the GPU runner does is substituted, each change named:

- the install step: `.venv/bin/pytest` and `.venv/bin/triton-perf` run the suite's own
  environment, which has this checkout installed, instead of a fresh environment installed
  from the package index (a minute of the suite's time per rehearsal;
  `tests/test_package.py` installs the wheel into a fresh environment and runs the example
  gate from it, and `tests/test_workflows.py` checks the extras the step installs).
- `TRITON_IMAGE`: NGC's image is out of reach (no registry here). Its stand-in is the suite's
  CPU image plus what NGC's image has and the Debian rootfs lacks: pip, taking system-wide
  installs (Debian 12 marks its Python externally managed, NGC's Ubuntu does not), and this
  machine's certificate authorities, through which the package index is reached.
- the image step: no `docker pull` (the stand-in is local), and `docker build --network host`
  (the private engine runs with `--bridge=none`).
- the gate step: no `--gpus=all` (no GPU here).
- `PYTEST_ADDOPTS`: `--triton-ulimit-memlock=off` where the engine refuses `memlock=-1`
  (the `memlock` fixture probes it), as the other container tests do; and
  `--triton-perf-compare-windows=5` (the least a comparison takes, instead of 10) and the
  fixed A/B design (`--triton-perf-compare-budget-s=0`: 5 pairs, one look) in one load of
  the arms (`--triton-perf-ab-epochs=1`, no reloads), with regressions flagged at alpha 1e-6
  (`--triton-perf-alpha`; one load does not model the copies' offset): the rehearsal checks
  the workflow, not the models' figures (the load epochs and the alpha are tested in
  `tests/test_gating.py` and by simulation in `tests/baseline`).
  And `-k`: the push rehearsal runs four tests of the example (`PUSH_TESTS`: a plain
  measurement, an ONNX model, a configuration search, a YAML suite test; two per shard),
  A/B against the previous revision, saved and committed; the pull request's checks the
  path that differs (the merge base, no save, no commit) on two (`PR_TESTS`), one of them
  with an ONNX reference model loaded from git. The whole example gate runs once in the
  suite, with its default windows (`tests/example/test_example_gate.py`).
- `actions/checkout`: the workspace is a git repository of this working tree (tracked and
  untracked, not ignored, files), pushed to a bare "origin", reset to the job's commit before
  each job (the virtual environment stays, as a warm runner's cache would);
  `actions/upload-artifact`: its paths are checked and copied aside under the artifact's
  name; `actions/download-artifact`: those copies, by the step's pattern, into its path.

The example's pytest.ini keeps the other windows short (1 s warm-up, 3 windows of 1 s).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import ssl
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import docker.errors
import pytest
import yaml

from pytest_triton_perf.report.registry import FORMATS
from tests.conftest import REPO
from tests.container.conftest import IMAGE
from tests.workflow_rehearsal import (
    SUITE_INSTALL,
    JobRun,
    Substitution,
    interpolate,
    matrix_entries,
    run_job,
    runner_environment,
)

WORKFLOW_FILE = REPO / ".github" / "workflows" / "perf-gate.yml"
JOB = "gate"
IMAGE_STEP = "Triton image with what the models import"
GATE_STEP = "Perf gate"
MERGE_JOB = "merge"
MERGE_STEP = "Merge the shards"
COMMIT_STEP = "Commit the new baseline"
DEFAULT_BRANCH = "main"
COMPARE_WINDOWS = "--triton-perf-compare-windows=5"
#: The fixed A/B design (5 pairs, one look): the rehearsal checks the workflow's plumbing, the
#: sequential analysis is tested by simulation.
FIXED_DESIGN = "--triton-perf-compare-budget-s=0"
#: One load of the arms: no reloads between epochs (the plumbing, not the statistics).
ONE_LOAD = "--triton-perf-ab-epochs=1"
#: No verdict is what the rehearsal checks, and in one load the copies' offset is not
#: modelled: a CI run flagged an A/A throughput -7.4% at alpha 0.01 (p=0.0012, se 1.4% on 5
#: df). At 1e-6 an offset must be some 20 standard errors to fail the gate step.
RARE_ALARMS = "--triton-perf-alpha=0.000001"
PR_TESTS = "test_sleepy_meets_its_sla or test_mlp_with_fixed_inputs"
#: The push's share of the example: a plain measurement, an ONNX model with fixed inputs, a
#: configuration search (whose record is not compared) and a YAML suite test, so that both
#: shards measure, the merge job sees both files, and the history holds compared and
#: uncompared records. The whole example runs once, in tests/example.
PUSH_TESTS = (
    "test_sleepy_meets_its_sla or test_mlp_with_fixed_inputs or test_sleepy_best_configuration "
    "or simple_concurrency_sweep"
)
STAND_IN_IMAGE = f"{IMAGE.rsplit(':', 1)[0]}-pip:{IMAGE.rsplit(':', 1)[-1]}"
# The report flags of `triton-perf merge` (from the report registry) and its merged results
# file: in the merge command, each names a file or folder that must exist and be uploaded.
REPORT_OPTIONS = {
    "-o": "json",
    **{fmt.cli_flag: fmt.name for fmt in FORMATS if fmt.cli_flag and fmt.metavar},
}

STAND_IN_DOCKERFILE = """\
FROM {image}
RUN apt-get update -qq \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \\
    python3-pip ca-certificates >/dev/null \\
 && rm -rf /var/lib/apt/lists/*
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV PIP_BREAK_SYSTEM_PACKAGES=1 PIP_CERT=/etc/ssl/certs/ca-certificates.crt
"""

SUBSTITUTIONS = (
    SUITE_INSTALL,
    Substitution(
        IMAGE_STEP,
        'docker pull "$TRITON_IMAGE"\n',
        "",
        "no registry here: TRITON_IMAGE is the stand-in built locally",
    ),
    Substitution(
        IMAGE_STEP,
        "docker build ",
        "docker build --network host ",
        "the private engine has no bridge network (dockerd --bridge=none)",
    ),
    Substitution(GATE_STEP, " --gpus=all", "", "no GPU here: the CPU image serves the models"),
)


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def _ca_bundle() -> Path:
    """The certificate authorities this machine's pip and Python trust."""
    for candidate in (
        *(os.environ.get(v) for v in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")),
        ssl.get_default_verify_paths().cafile,
        "/etc/ssl/certs/ca-certificates.crt",
    ):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    pytest.fail("no certificate bundle found for the stand-in image", pytrace=False)


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    """The workflow as GitHub reads it."""
    loaded: dict[str, Any] = yaml.safe_load(WORKFLOW_FILE.read_text())
    return loaded


@pytest.fixture(scope="module")
def stand_in_image(docker_client: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The suite's CPU image with what NGC's Triton image has for the workflow's build step
    (see the module docstring). Built each time: the engine's build cache makes that a
    second once done, and a rebuilt CPU image is never served stale."""
    context = tmp_path_factory.mktemp("stand-in")
    (context / "Dockerfile").write_text(STAND_IN_DOCKERFILE.format(image=IMAGE))
    shutil.copyfile(_ca_bundle(), context / "ca-certificates.crt")
    try:
        docker_client.images.build(
            path=str(context), tag=STAND_IN_IMAGE, network_mode="host", rm=True, forcerm=True
        )
    except docker.errors.BuildError as e:
        log = "".join(str(chunk.get("stream", chunk)) for chunk in e.build_log)
        pytest.fail(f"building {STAND_IN_IMAGE} failed: {e}\n{log[-3000:]}", pytrace=False)
    return STAND_IN_IMAGE


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A bare repository holding this working tree as one commit on the default branch."""
    root = Path(tempfile.mkdtemp(prefix="perf-gate-rehearsal-"))
    source = root / "source"
    listed = _git(REPO, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    for rel in sorted(set(filter(None, listed.split("\0")))):
        if (REPO / rel).is_file():  # a tracked file deleted in the working tree is absent
            (source / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, source / rel)
    _git(source, "init", "-q", "-b", DEFAULT_BRANCH)
    _git(source, "add", "-A")
    _git(source, "-c", "user.name=rehearsal", "-c", "user.email=rehearsal@localhost",
         "commit", "-q", "-m", "the working tree")  # fmt: skip
    _git(root, "clone", "-q", "--bare", str(source), "origin.git")
    yield root / "origin.git"
    shutil.rmtree(root, ignore_errors=True)


def _checkout(origin: Path, workspace: Path, ref: str) -> str:
    """actions/checkout with full history: ``workspace`` at ``ref`` of ``origin``, cleaned of
    everything untracked but the virtual environment (which the install step reuses)."""
    if not (workspace / ".git").exists():
        _git(origin.parent, "clone", "-q", str(origin), str(workspace))
    _git(workspace, "fetch", "-q", "origin")
    _git(workspace, "checkout", "-q", "-B", ref.split("/")[-1], ref)
    _git(workspace, "clean", "-q", "-ffdx", "-e", "/.venv")
    _git(workspace, "config", "user.name", "rehearsal")
    _git(workspace, "config", "user.email", "rehearsal@localhost")
    return _git(workspace, "rev-parse", "HEAD")


def _reset(workspace: Path) -> None:
    """A fresh checkout of the commit the workspace is at, for the next job (its own
    runner), keeping the virtual environment."""
    _git(workspace, "reset", "-q", "--hard")
    _git(workspace, "clean", "-q", "-ffdx", "-e", "/.venv")


def _rehearse(
    workflow: Mapping[str, Any],
    workspace: Path,
    github: Mapping[str, Any],
    stand_in: str,
    memlock: str,
    runner_temp: Path,
    addopts: tuple[str, ...] = (),
) -> tuple[list[JobRun], JobRun, list[Path]]:
    """Run each shard of the gate job, then the merge job; returns the shards' runs, the
    merge job's run and the paths its upload step found. Each job has its own
    ``runner_temp / <job>`` (its step summary)."""
    artifacts = runner_temp / "artifacts"
    uploaded: list[Path] = []

    def uses(action: str, with_values: Mapping[str, str], env: Mapping[str, str]) -> None:
        if action.startswith("actions/checkout@"):
            return  # the workspace is the checkout
        if action.startswith("actions/upload-artifact@"):
            (line,) = filter(None, map(str.strip, with_values["path"].splitlines()))
            path = workspace / line
            assert path.is_dir() and any(path.iterdir()), f"{action}: {line} is empty or absent"
            shutil.copytree(path, artifacts / with_values["name"])
            uploaded.append(path)
            return
        if action.startswith("actions/download-artifact@"):
            found = sorted(artifacts.glob(with_values["pattern"]))
            assert found, f"{action}: no artifact matches {with_values['pattern']}"
            for artifact in found:
                shutil.copytree(artifact, workspace / with_values["path"] / artifact.name)
            return
        raise AssertionError(f"the rehearsal does not know how to perform {action}")

    base_env = runner_environment(drop_prefix=sys.prefix)
    options = [COMPARE_WINDOWS, FIXED_DESIGN, ONE_LOAD, RARE_ALARMS, *addopts]
    if memlock == "off":
        options.append("--triton-ulimit-memlock=off")
    base_env["PYTEST_ADDOPTS"] = shlex.join(options)
    shards = []
    for entry in matrix_entries(workflow["jobs"][JOB]):
        _reset(workspace)
        run = run_job(
            workflow,
            JOB,
            workspace=workspace,
            github=github,
            base_env=base_env,
            runner_temp=runner_temp / f"{JOB}-{entry['matrix']['shard']}",
            substitutions=SUBSTITUTIONS,
            env_overrides={"TRITON_IMAGE": stand_in},
            uses=uses,
            contexts=entry,
        )
        print(f"rehearsal of {github['event_name']}, shard {entry['matrix']}: {run.timings()}")
        shards.append(run)
    result = "failure" if any(r.failed for r in shards) else "success"
    _reset(workspace)
    uploaded.clear()  # the merge job's own upload from here
    merged = run_job(
        workflow,
        MERGE_JOB,
        workspace=workspace,
        github=github,
        base_env=base_env,
        runner_temp=runner_temp / MERGE_JOB,
        substitutions=(SUITE_INSTALL,),
        uses=uses,
        contexts={"needs": {JOB: {"result": result}}},
    )
    print(f"rehearsal of {github['event_name']}, merge: {merged.timings()}")
    return shards, merged, uploaded


def _reports(workflow: Mapping[str, Any], workspace: Path) -> dict[str, Path]:
    """The reports the merge command writes, by format (json, junit, markdown, plots)."""
    merge = next(s for s in workflow["jobs"][MERGE_JOB]["steps"] if s.get("name") == MERGE_STEP)
    found = re.findall(r"(--[a-z-]+|-o) (\S+)", merge["run"])
    return {
        REPORT_OPTIONS[flag]: workspace / path for flag, path in found if flag in REPORT_OPTIONS
    }


def _check_reports(
    workflow: Mapping[str, Any],
    shards: list[JobRun],
    merged: JobRun,
    uploaded: list[Path],
    workspace: Path,
) -> None:
    """Every step that ran passed, each shard measured its share, and every report the merge
    command names exists, holds what its format promises, and lies under the uploaded path."""
    for run in (*shards, merged):
        gate_output = "\n".join(s.output for s in run.steps if s.name == GATE_STEP)
        hint = (
            "\n(the gate failed on the example's SLA bounds: they assume a machine that other "
            "work does not saturate)"
            if "SLA breached" in gate_output
            else ""
        )
        assert not run.failed, run.log() + hint
    for run in shards:
        assert "triton-perf: shard " in run.step(GATE_STEP).output, run.log()
    reports = _reports(workflow, workspace)
    assert set(reports) == {"json", "junit", "markdown", "plots"}, reports
    for report in reports.values():
        assert report.exists(), f"{report.relative_to(workspace)} missing\n{merged.log()}"
        assert any(report == u or u in report.parents for u in uploaded), (
            f"{report.relative_to(workspace)} is not under an uploaded path: {uploaded}"
        )
        if report.suffix == ".json":
            assert json.loads(report.read_text())["measurements"], "no measurement in the results"
        elif report.suffix == ".xml":
            assert list(ET.parse(report).getroot().iter("testcase")), "no JUnit test case"
        elif report.suffix == ".md":
            assert report.read_text().strip()
        else:
            assert list(report.glob("*.png")), f"no plot in {report}"


def _github(
    event_name: str, sha: str, ref: str, base_ref: str = "", before: str | None = None
) -> dict[str, Any]:
    """The ``github`` context of an event in a repository whose default branch is main;
    ``before`` is a push's previous head (None: the event has none, which GitHub reads as
    null)."""
    return {
        "sha": sha,
        "event_name": event_name,
        "ref": ref,
        "ref_name": ref.split("/", 2)[2],
        "base_ref": base_ref,
        "event": {"repository": {"default_branch": DEFAULT_BRANCH}, "before": before},
    }


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The runner's workspace, shared by the rehearsals (the second reuses the virtual
    environment the first one's install step made fresh)."""
    return tmp_path_factory.mktemp("runner") / "work"


@pytest.fixture
def rehearse(
    workflow: dict[str, Any],
    workspace: Path,
    stand_in_image: str,
    memlock: str,
    tmp_path: Path,
) -> Callable[..., JobRun]:
    """``rehearse(github, addopts=())``: the gate's shards and the merge job run for that
    ``github`` context (each job's runner directory under ``tmp_path``), the merged reports
    checked; returns the shards' runs and the merge job's."""

    def rehearse_job(
        github: Mapping[str, Any], addopts: tuple[str, ...] = ()
    ) -> tuple[list[JobRun], JobRun]:
        shards, merged, uploaded = _rehearse(
            workflow, workspace, github, stand_in_image, memlock, tmp_path, addopts
        )
        _check_reports(workflow, shards, merged, uploaded, workspace)
        return shards, merged

    return rehearse_job


def test_default_branch_push_gates_ab_against_the_previous_revision_and_commits_history(
    docker_client: Any,
    workflow: dict[str, Any],
    origin: Path,
    workspace: Path,
    rehearse: Callable[..., tuple[list[JobRun], JobRun]],
    tmp_path: Path,
) -> None:
    before = _checkout(origin, workspace, f"origin/{DEFAULT_BRANCH}")
    # The push: one commit on top of the default branch's head, which was `before`.
    (workspace / "README.md").write_text((workspace / "README.md").read_text() + "\nPushed.\n")
    _git(workspace, "commit", "-q", "-am", "a pushed change")
    _git(workspace, "push", "-q", "origin", f"HEAD:{DEFAULT_BRANCH}")
    sha = _git(workspace, "rev-parse", "HEAD")
    github = _github("push", sha, f"refs/heads/{DEFAULT_BRANCH}", before=before)
    shards, merged = rehearse(github, addopts=("-k", PUSH_TESTS))
    # The gate: A/B against the previous accepted revision, every measurement compared, on
    # each shard; the merged report has them all, from both shards.
    for run in shards:
        assert run.outputs["baseline"]["args"] == f"--triton-perf-baseline-ref={before}"
    summary = (tmp_path / f"{JOB}-1" / "step_summary.md").read_text()
    assert f"A/B against the previous accepted revision `{before}`" in summary
    results = json.loads(_reports(workflow, workspace)["json"].read_text())
    measurements = {(m["test"], m["label"]): m for m in results["measurements"]}
    # A configuration search's record (its best candidate) is not compared with a reference.
    compared = {k: m for k, m in measurements.items() if "search" not in m["analysis"]}
    assert len(compared) < len(measurements)  # the example has searches: the filter works
    assert {(m["baseline"] or {}).get("mode") for m in compared.values()} == {"ab"}
    assert {m["baseline"]["status"] for m in compared.values()} == {"compared"}
    assert results["session"]["saved"]
    assert [s["shard"] for s in results["session"]["merged_from"]] == ["1/2", "2/2"]
    assert all(s["measurements"] for s in results["session"]["merged_from"])
    merged_summary = (tmp_path / MERGE_JOB / "step_summary.md").read_text()
    # Every measurement has its row, whichever file its test is in (test_gate.py, the YAML
    # suite).
    files = {test.split("::")[0] for test, _ in measurements}
    rows = sum(merged_summary.count(f"| `{name}::") for name in files)
    assert rows >= len(measurements), (files, rows, len(measurements))
    # The history: this run's (the candidate arm's) measurements, committed and pushed.
    assert not merged.step(COMMIT_STEP).skipped
    subject = _git(origin, "log", "-1", "--format=%s", DEFAULT_BRANCH)
    assert subject == f"perf baseline from {sha[:12]} [skip ci]", merged.log()
    assert _git(origin, "rev-parse", f"{DEFAULT_BRANCH}~1") == sha
    baseline_dir = workflow["env"]["BASELINE_DIR"]
    listed = _git(origin, "ls-tree", "-r", "--name-only", DEFAULT_BRANCH, baseline_dir)
    docs = [
        json.loads(_git(origin, "show", f"{DEFAULT_BRANCH}:{path}"))
        for path in listed.splitlines()
        if path.endswith(".json") and path.count("/") > baseline_dir.count("/") + 1
        and not path.endswith("/environment.json")
    ]  # fmt: skip
    assert docs, merged.log()
    # Beside the key directories, the tests' durations that balance the next run's shards.
    assert f"{baseline_dir}/durations.json" in listed.splitlines()
    for doc in docs:
        measured = measurements[(doc["test"], doc["label"])]
        (saved,) = doc["runs"]
        assert saved["git_commit"] == sha
        for figure in ("requests", "throughput", "latency_ms"):
            assert saved["result"][figure] == measured["result"][figure], figure
        if (doc["test"], doc["label"]) in compared:
            reference = measured["baseline"]["reference"]
            assert saved["result"]["latency_ms"]["avg"] != reference["latency_ms"]["avg"]
    # The gate image is removed at the end; the stand-in stays for the next rehearsal.
    gate_image = interpolate(workflow["env"]["GATE_IMAGE"], {"github": github})
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(gate_image)


def test_pull_request_gates_ab_against_the_merge_base(
    workflow: dict[str, Any],
    origin: Path,
    workspace: Path,
    rehearse: Callable[..., tuple[list[JobRun], JobRun]],
    tmp_path: Path,
) -> None:
    base = _checkout(origin, workspace, f"origin/{DEFAULT_BRANCH}")
    # The pull request: one commit on top of the default branch.
    _git(workspace, "checkout", "-q", "-B", "feature")
    (workspace / "README.md").write_text((workspace / "README.md").read_text() + "\nA change.\n")
    _git(workspace, "commit", "-q", "-am", "a change")
    head = _git(workspace, "rev-parse", "HEAD")
    github = _github("pull_request", head, "refs/pull/1/merge", base_ref=DEFAULT_BRANCH)
    shards, merged = rehearse(github, addopts=("-k", PR_TESTS))
    for run in shards:
        assert run.outputs["baseline"]["args"] == f"--triton-perf-baseline-ref={base}"
    assert merged.step(COMMIT_STEP).skipped
    assert _git(origin, "rev-parse", DEFAULT_BRANCH) == base, "a pull request pushed a commit"
    summary = (tmp_path / f"{JOB}-2" / "step_summary.md").read_text()
    assert f"A/B against the merge base `{base}`" in summary
    results = json.loads(_reports(workflow, workspace)["json"].read_text())
    measurements = results["measurements"]
    assert {(m["baseline"] or {}).get("mode") for m in measurements} == {"ab"}
    assert {m["result"]["model"] for m in measurements} == {"sleepy", "mlp"}
