"""The plugin with ``--triton-image``: an inner pytest run measures in a real container,
gives SLA verdicts, reports a model load failure, removes a dead session's container at the
start and leaves no container behind."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from pytest_triton_perf.server.docker_engine import (
    LABEL_OWNER_HOST,
    LABEL_OWNER_PARENT_PID,
    LABEL_OWNER_PID,
    LABEL_OWNER_START,
    LABEL_SESSION,
)
from tests.conftest import BROKEN_MODELS, EXAMPLE_MODELS, FAST_OPTIONS
from tests.container.conftest import IMAGE

INNER_TESTS = """
import json, pathlib
import pytest

@pytest.mark.sla(p99_ms=200)
def test_pass(triton_perf, triton_server):
    pathlib.Path("server.json").write_text(json.dumps({
        "kind": triton_server.kind,
        "name": triton_server.container_name,
        "id": triton_server.server_id,
    }))
    triton_perf.measure("sleepy")

@pytest.mark.sla(p99_ms=5)
def test_breach(triton_perf):
    triton_perf.measure("sleepy", protocol="http")

@pytest.mark.sla(p99_ms=500, min_throughput=10)
def test_simple(triton_perf):
    triton_perf.measure("simple", concurrency=2)

def test_load_failure(triton_perf):
    triton_perf.measure("init_error")
"""


def dead_pid() -> int:
    """The pid of a process that has ended (a pytest killed with SIGKILL, say)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture(scope="module")
def stale_container(docker_client: Any) -> Any:
    """A labelled container as a killed pytest run leaves it: running, owner gone."""
    container = docker_client.containers.create(
        IMAGE,
        ["sleep", "600"],
        name=f"triton-perf-stale-{os.getpid()}",
        labels={
            LABEL_SESSION: "deadsession0000",
            LABEL_OWNER_PID: str(dead_pid()),
            # The leak check of this suite counts it as ours until the sweep removes it.
            LABEL_OWNER_PARENT_PID: str(os.getpid()),
            LABEL_OWNER_HOST: socket.gethostname(),
            LABEL_OWNER_START: "1.00",
        },
        network_mode="host",
        init=True,
    )
    container.start()
    return container


@pytest.fixture(scope="module")
def inner_run(
    docker_client: Any,
    container_options: list[str],
    stale_container: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """One inner session with --triton-image over simple, sleepy and a broken model."""
    path = tmp_path_factory.mktemp("container_run")
    repo = path / "repo"
    ignore = shutil.ignore_patterns("__pycache__")
    for model in ("simple", "sleepy"):
        shutil.copytree(EXAMPLE_MODELS / model, repo / model, ignore=ignore)
    shutil.copytree(BROKEN_MODELS / "init_error", repo / "init_error", ignore=ignore)
    (path / "test_inner.py").write_text(INNER_TESTS)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-rA",
            f"--junitxml={path / 'junit.xml'}",
            f"--triton-model-repository={repo}",
            *container_options,
            *FAST_OPTIONS,
            str(path / "test_inner.py"),
        ],
        capture_output=True,
        text=True,
        cwd=path,
        timeout=300,
    )
    return proc, path


def test_measures_and_gives_sla_verdicts_in_a_container(
    inner_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    proc, path = inner_run
    result = pytest.RunResult(proc.returncode, proc.stdout.splitlines(), [], 0)
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*SLA breached in test_inner.py::test_breach: 1 of 2 checks failed",
            "*sleepy conc=1 batch=1 http*p99_ms*<= 5.00*FAIL",
        ]
    )
    server = json.loads((path / "server.json").read_text())
    assert server["kind"] == "container" and server["name"] == server["id"]
    case = next(
        c for c in ET.parse(path / "junit.xml").iter("testcase") if c.get("name") == "test_simple"
    )
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert props["triton_perf.0.model"] == "simple"
    assert float(props["triton_perf.0.throughput"]) > 10
    assert props["triton_perf.0.sla"] == "pass"


def test_model_load_failure_fails_only_its_test(
    inner_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    proc, _ = inner_run
    assert "FAILED test_inner.py::test_load_failure" in proc.stdout
    assert "model 'init_error' failed to load on Triton 2.51.0 (container" in proc.stdout
    assert "deliberate init failure" in proc.stdout


def test_stale_container_of_a_dead_session_is_removed_and_reported(
    inner_run: tuple[subprocess.CompletedProcess[str], Path],
    stale_container: Any,
    docker_client: Any,
) -> None:
    proc, _ = inner_run
    import docker.errors

    assert (
        f"pytest-triton-perf: removed stale container {stale_container.name} "
        f"({stale_container.short_id}, session deadsession0000): its owner, pid "
    ) in proc.stdout
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(stale_container.id)


def test_no_container_is_left_after_the_session(
    inner_run: tuple[subprocess.CompletedProcess[str], Path], docker_client: Any
) -> None:
    _, path = inner_run
    name = json.loads((path / "server.json").read_text())["name"]
    import docker.errors

    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(name)


def test_missing_image_with_pull_never_fails_the_tests_naming_it(
    pytester: pytest.Pytester, docker_client: Any, container_options: list[str]
) -> None:
    pytester.makepyfile("def test_a(triton_perf): pass")
    result = pytester.runpytest_subprocess(
        f"--triton-model-repository={EXAMPLE_MODELS}",
        *container_options,
        "--triton-image=registry.invalid/nobody/triton:0.0",
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*Triton server could not start: image registry.invalid/nobody/triton:0.0 is not "
            "on the Docker engine*--triton-pull=never forbids pulling it*"
        ]
    )
