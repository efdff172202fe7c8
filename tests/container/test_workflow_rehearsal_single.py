"""Rehearsal of the CI template to copy, `examples/ci/perf-gate-single.yml`: its one job's own
steps, read from the YAML, run here for a pull request against the private Docker engine and
the CPU Triton image, as `test_workflow_rehearsal.py` rehearses the sharded workflow.

A template edit that would break a user's gate breaks this test: the install step runs as
written into a fresh virtual environment, the gate step runs its `pytest` command A/B against
the pull request's base branch (`origin/<base_ref>`) with `--triton-perf-no-baseline=fail`,
and the upload must hold the reports it names.

What this machine cannot do as the GPU runner does is substituted, each change named:

- the install step: `.venv/bin/pytest` is the suite's own pytest, which has this checkout
  installed, instead of a fresh environment from the package index (which may not have
  this version; `tests/test_package.py` installs the wheel into a fresh environment and
  runs the example gate from it);
- `TRITON_IMAGE`: the suite's CPU image, which is local: the pull step inspects it instead
  of pulling; `--gpus=all` is dropped (no GPU here);
- `PERF_TESTS`: the example's tests (`example_repo`, whose pytest.ini names its model
  repository), and `PYTEST_ADDOPTS` as the sharded rehearsal's: the least a comparison
  takes, the fixed A/B design, regressions flagged at alpha 1e-6,
  `--triton-ulimit-memlock=off` where the engine refuses `memlock=-1`, and one test of the
  example (`-k`): the rehearsal checks the template, not the models;
- `actions/checkout`: the workspace is a clone of a bare "origin" holding this working tree,
  with the pull request's commit on top; `actions/upload-artifact`: its path is checked and
  copied aside.
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO
from tests.container.conftest import IMAGE
from tests.container.test_workflow_rehearsal import (
    COMPARE_WINDOWS,
    DEFAULT_BRANCH,
    FIXED_DESIGN,
    RARE_ALARMS,
    _checkout,
    _git,
    origin,  # noqa: F401  (the fixture: a bare repository of this working tree)
)
from tests.workflow_rehearsal import Substitution, run_job, runner_environment

TEMPLATE = REPO / "examples" / "ci" / "perf-gate-single.yml"
JOB = "gate"
INSTALL_STEP = "Install the plugin"
PULL_STEP = "Pull Triton"
GATE_STEP = "Perf gate"
TESTS = "test_sleepy_meets_its_sla"

SUBSTITUTIONS = (
    Substitution(
        INSTALL_STEP,
        "python3 -m venv .venv && .venv/bin/pip install -q 'pytest-triton-perf'",
        "mkdir -p .venv/bin && printf '#!/bin/sh\\nexec %s -m pytest \"$@\"\\n' "
        f"{shlex.quote(sys.executable)} >.venv/bin/pytest && chmod +x .venv/bin/pytest",
        "the package index may not have this version, and installing its dependencies takes "
        "a minute: the suite's own environment, which has this checkout installed, runs the "
        "gate (tests/test_package.py installs the wheel into a fresh environment and runs the "
        "example gate from it)",
    ),
    Substitution(
        PULL_STEP,
        'docker pull -q "$TRITON_IMAGE"',
        'docker image inspect "$TRITON_IMAGE" >/dev/null',
        "no registry here: TRITON_IMAGE is the suite's CPU image, built locally",
    ),
    Substitution(GATE_STEP, " --gpus=all", "", "no GPU here: the CPU image serves the models"),
)


def test_pull_request_gates_ab_against_the_base_branch_and_uploads_the_reports(
    docker_client: Any,
    origin: Path,  # noqa: F811
    memlock: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    workflow: dict[str, Any] = yaml.safe_load(TEMPLATE.read_text())
    workspace = tmp_path_factory.mktemp("single-runner") / "work"
    runner_temp = tmp_path_factory.mktemp("single-runner-temp")
    _checkout(origin, workspace, f"origin/{DEFAULT_BRANCH}")
    # The pull request: one commit on top of the base branch.
    _git(workspace, "checkout", "-q", "-B", "feature")
    (workspace / "README.md").write_text((workspace / "README.md").read_text() + "\nA change.\n")
    _git(workspace, "commit", "-q", "-am", "a change")
    head = _git(workspace, "rev-parse", "HEAD")
    github = {
        "sha": head,
        "event_name": "pull_request",
        "ref": "refs/pull/1/merge",
        "ref_name": "1/merge",
        "base_ref": DEFAULT_BRANCH,
        "event": {"repository": {"default_branch": DEFAULT_BRANCH}},
    }
    artifacts = runner_temp / "artifacts"
    uploaded: list[Path] = []

    def uses(action: str, with_values: Mapping[str, str], env: Mapping[str, str]) -> None:
        if action.startswith("actions/checkout@"):
            return  # the workspace is the checkout
        if action.startswith("actions/upload-artifact@"):
            path = workspace / with_values["path"].strip()
            assert path.is_dir() and any(path.iterdir()), f"{action}: {path} is empty or absent"
            shutil.copytree(path, artifacts / with_values["name"])
            uploaded.append(path)
            return
        raise AssertionError(f"the rehearsal does not know how to perform {action}")

    options = [COMPARE_WINDOWS, FIXED_DESIGN, RARE_ALARMS, "-k", TESTS]
    if memlock == "off":
        options.append("--triton-ulimit-memlock=off")
    base_env = runner_environment(drop_prefix=sys.prefix)
    base_env["PYTEST_ADDOPTS"] = shlex.join(options)
    run = run_job(
        workflow,
        JOB,
        workspace=workspace,
        github=github,
        base_env=base_env,
        runner_temp=runner_temp / JOB,
        substitutions=SUBSTITUTIONS,
        env_overrides={"TRITON_IMAGE": IMAGE, "PERF_TESTS": "example_repo"},
        uses=uses,
    )
    print(f"rehearsal of the single-job template: {run.timings()}")
    assert not run.failed, run.log()
    assert "1 passed" in run.step(GATE_STEP).output, run.log()
    # The reports it names, uploaded: every measurement A/B against the base branch.
    assert uploaded == [workspace / "perf"]
    reports = artifacts / "perf-reports"
    results = json.loads((reports / "results.json").read_text())
    measurements = results["measurements"]
    assert measurements
    for m in measurements:
        assert m["baseline"]["mode"] == "ab" and m["baseline"]["status"] == "compared", m
        assert f"git revision origin/{DEFAULT_BRANCH}" in m["baseline"]["note"], m["baseline"]
    assert list(ET.parse(reports / "junit.xml").getroot().iter("testcase"))
    assert (reports / "summary.md").read_text().startswith("## ")
    # The job's step summary got the Markdown summary too (GITHUB_STEP_SUMMARY).
    assert "sleepy" in (runner_temp / JOB / "step_summary.md").read_text()
