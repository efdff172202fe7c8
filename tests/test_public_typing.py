"""The public API as a type checker sees it: a user's test file that types its fixture as
``TritonPerf`` passes ``mypy --strict``; a sweep's list used as one result, a misspelt
keyword or a value outside a keyword's choices fails it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import REPO

USER_TEST = """\
from __future__ import annotations

import pytest

from pytest_triton_perf import PerfResult, TritonPerf


@pytest.mark.sla(p99_ms=30, min_throughput=50)
def test_bert(triton_perf: TritonPerf) -> None:
    result = triton_perf.measure("bert", concurrency=2, protocol="http", inputs="zero")
    throughput: float = result.throughput
    assert result.latency_ms is not None
    p99: float = result.latency_ms.p99
    assert throughput > 0 and p99 < 30


def test_sweeps(triton_perf: TritonPerf) -> None:
    closed: list[PerfResult] = triton_perf.measure("bert", concurrency=[1, 2], window_s=2.0)
    rates = triton_perf.measure("bert", request_rate=[50.0, 100.0], arrival="poisson", seed=3)
    assert [r.throughput for r in closed + rates]


def test_llm(triton_perf: TritonPerf) -> None:
    result = triton_perf.measure(
        "llm", concurrency=4, token_output="TOKEN", prompt_length=(64, 512), stream_timeout_s=30
    )
    assert result.ttft_ms is not None and result.ttft_ms.p99 < 100
    found = triton_perf.capacity("bert", over="request_rate", shared_memory="system")
    assert found.capacity
"""
#: Line (in the file below) -> what mypy says there.
MISUSES = {
    8: '"list[PerfResult]" has no attribute "throughput"',
    9: 'Unexpected keyword argument "concurency"',
    10: 'No overload variant of "measure" of "TritonPerf" matches argument types "str", "str"',
    11: 'Unexpected keyword argument "concurrency" for "capacity"',
}
MISUSE = """\
from __future__ import annotations

from pytest_triton_perf import TritonPerf


def test_misuses(triton_perf: TritonPerf) -> None:
    # A sweep returns a list of results, not one.
    assert triton_perf.measure("bert", concurrency=[1, 2]).throughput > 0
    triton_perf.measure("bert", concurency=2)
    triton_perf.measure("bert", protocol="tcp")
    triton_perf.capacity("bert", concurrency=2)
"""


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the module's mypy runs: the second reuses the package's analysis."""
    return tmp_path_factory.mktemp("mypy-cache")


def mypy_strict(tmp_path: Path, cache: Path, text: str) -> subprocess.CompletedProcess[str]:
    """``mypy --strict`` on ``text`` as a user's test file, the package found at this
    checkout's root; errors inside the package (it is not --strict clean, and is checked
    with its own settings by the lint test) are not the user's."""
    (tmp_path / "test_user.py").write_text(text, encoding="utf-8")
    (tmp_path / "mypy.ini").write_text("[mypy]\n", encoding="utf-8")
    command = [sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent"]
    command += ["--config-file=mypy.ini", f"--cache-dir={cache}", "test_user.py"]
    env = {**os.environ, "MYPYPATH": str(REPO)}
    return subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )


def test_a_users_test_file_passes_mypy_strict(tmp_path: Path, mypy_cache: Path) -> None:
    done = mypy_strict(tmp_path, mypy_cache, USER_TEST)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Success: no issues found in 1 source file" in done.stdout


def test_misuses_of_the_fixture_fail_mypy_strict(tmp_path: Path, mypy_cache: Path) -> None:
    done = mypy_strict(tmp_path, mypy_cache, textwrap.dedent(MISUSE))
    assert done.returncode == 1, done.stdout + done.stderr
    errors: dict[int, str] = {}
    for match in re.finditer(r"^test_user\.py:(\d+): error: (.*)$", done.stdout, re.M):
        errors[int(match[1])] = errors.get(int(match[1]), "") + match[2]
    assert set(errors) == set(MISUSES), done.stdout
    for line, message in MISUSES.items():
        assert message in errors[line], (line, errors[line])
