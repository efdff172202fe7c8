"""Plugin behaviour through inner pytest runs (pytester): options, marker validation,
verdicts, failure text, summary and JUnit properties, against the real embedded server."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import psutil
import pytest

from pytest_triton_perf.server.local import LocalTritonServer
from tests.conftest import BROKEN_MODELS, EXAMPLE_MODELS, FAST_OPTIONS


def remote_args(server: LocalTritonServer) -> list[str]:
    """Point an inner run at the suite's server: no second server start per inner run."""
    return [
        f"--triton-url={server.http_url}",
        f"--triton-grpc-url={server.grpc_url}",
        *FAST_OPTIONS,
    ]


# -- loading ---------------------------------------------------------------------------------

#: What loading the plugin must not import: pytest loads it through its entry point in every
#: run of a project that has it installed, whether or not the run measures anything. scipy
#: alone took 0.45 s of the plugin's 1.1 s import here; the statistics import it when they
#: compare.
HEAVY_MODULES = ("scipy", "matplotlib", "tritonclient.grpc", "tritonclient.http", "grpc", "docker")


def test_loading_the_plugin_leaves_the_heavy_libraries_unimported() -> None:
    code = (
        "import sys, pytest_triton_perf.plugin\n"
        f"print(sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr


# -- validation before any server starts ----------------------------------------------------


def test_marker_is_registered_for_strict_markers(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        @pytest.mark.sla(p99_ms=30)
        def test_a(): pass
        """
    )
    result = pytester.runpytest_inprocess("--strict-markers", "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.OK
    result = pytester.runpytest_inprocess("--markers")
    result.stdout.fnmatch_lines(
        [
            "@pytest.mark.sla(p50_ms=*min_capacity=*max_error_rate=, regression=,"
            " max_config_gap=, models=)*"
        ]
    )


@pytest.mark.parametrize(
    ("marker", "expected"),
    [
        (
            "sla(p99=30)",
            "*test_bad.py::test_a: unknown sla key 'p99'. Did you mean 'p99_ms'? Valid keys: p50*",
        ),
        (
            "sla(p99_ms='fast')",
            "*test_bad.py::test_a: sla(p99_ms='fast'): the bound must be a number*",
        ),
        (
            "sla(min_throughput=-5)",
            "*sla(min_throughput=-5): the bound must be a positive finite number*",
        ),
    ],
)
def test_bad_marker_is_a_usage_error_before_any_server_starts(
    pytester: pytest.Pytester, marker: str, expected: str
) -> None:
    pytester.makepyfile(
        test_bad=f"""
        import pytest
        @pytest.mark.{marker}
        def test_a(triton_perf):
            triton_perf.measure("simple")
        """
    )
    # The repository does not exist: had a server been started, the error would say so.
    result = pytester.runpytest_inprocess("--triton-model-repository=/nonexistent")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*invalid sla marker:*", expected])
    assert "does not exist" not in result.stdout.str() + result.stderr.str()


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        ("--triton-perf-windows=0", "*--triton-perf-windows='0': a whole number >= 1 is accepted*"),
        (
            "--triton-perf-window-s=fast",
            "*--triton-perf-window-s='fast': a positive number of seconds*",
        ),
        (
            "--triton-url=https://h:1",
            "*--triton-url='https://h:1': scheme 'https' is not supported*",
        ),
    ],
)
def test_bad_option_value_is_a_usage_error(
    pytester: pytest.Pytester, option: str, expected: str
) -> None:
    pytester.makepyfile("def test_a(triton_perf): pass")
    result = pytester.runpytest_subprocess(option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([expected])


def test_bad_ini_value_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ntriton_perf_windows = many\n")
    pytester.makepyfile("def test_a(): pass")
    result = pytester.runpytest_inprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*triton_perf_windows (ini)='many': a whole number >= 1*"])


def test_missing_repository_fails_the_test_with_the_remedy(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_a(triton_perf): pass")
    result = pytester.runpytest_inprocess()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*no model repository: set --triton-model-repository=DIR*"])


# -- verdicts against the real server -------------------------------------------------------

SLA_TESTS = """
import pytest

@pytest.mark.sla(p99_ms=200)
def test_pass(triton_perf):
    triton_perf.measure("sleepy")

@pytest.mark.sla(p99_ms=5, min_throughput=1)
def test_fail(triton_perf):
    triton_perf.measure("sleepy", protocol="http")

@pytest.mark.sla(p99_ms=200)
def test_measured_nothing(triton_perf):
    pass

@pytest.mark.sla(max_gpu_memory_mb=5000)
def test_gpu_memory_without_gpu(triton_perf):
    triton_perf.measure("simple")

def test_unknown_model(triton_perf):
    triton_perf.measure("no_such_model")

def test_failed_requests_fail_without_marker(triton_perf):
    triton_perf.measure("flaky")

@pytest.mark.sla(max_error_rate=0.5)
def test_failed_requests_within_bound(triton_perf):
    triton_perf.measure("flaky", concurrency=2)
"""


MODULE_MARKER_TESTS = """
import pytest

pytestmark = pytest.mark.sla(p99_ms=5)

@pytest.mark.sla(p99_ms=200)
def test_closer_marker_wins(triton_perf):
    triton_perf.measure("sleepy")

def test_module_marker_applies(triton_perf):
    triton_perf.measure("sleepy")
"""


@pytest.fixture(scope="module")
def sla_run(
    server: LocalTritonServer, tmp_path_factory: pytest.TempPathFactory
) -> tuple[pytest.RunResult, Path]:
    """One inner run over the SLA cases above (module-scoped: the cases share it)."""
    path = tmp_path_factory.mktemp("sla_run")
    (path / "test_sla_cases.py").write_text(SLA_TESTS)
    (path / "test_sla_module.py").write_text(MODULE_MARKER_TESTS)
    junit = path / "junit.xml"
    import subprocess
    import sys

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-rA",
            f"--junitxml={junit}",
            *remote_args(server),
            str(path),
        ],
        capture_output=True,
        text=True,
        cwd=path,
        timeout=300,
    )
    return pytest.RunResult(
        proc.returncode, proc.stdout.splitlines(), proc.stderr.splitlines(), 0
    ), junit


def test_sla_pass_and_breach(sla_run: tuple[pytest.RunResult, Path]) -> None:
    result, _ = sla_run
    result.assert_outcomes(passed=3, failed=6)
    result.stdout.fnmatch_lines(
        [
            "*SLA breached in test_sla_cases.py::test_fail: 1 of 3 checks failed",
            "*measurement*metric*bound*measured*verdict",
            "*sleepy conc=1 batch=1 http*max_error_rate*<= 0 *ok",
            "*sleepy conc=1 batch=1 http*min_throughput*>= 1.00*ok",
            "*sleepy conc=1 batch=1 http*p99_ms*<= 5.00*FAIL",
        ]
    )


def test_module_marker_applies_and_closest_marker_wins(
    sla_run: tuple[pytest.RunResult, Path],
) -> None:
    result, _ = sla_run
    result.stdout.fnmatch_lines(["PASSED test_sla_module.py::test_closer_marker_wins"])
    result.stdout.fnmatch_lines(["FAILED test_sla_module.py::test_module_marker_applies*"])


def test_breach_shows_the_measured_p99(sla_run: tuple[pytest.RunResult, Path]) -> None:
    result, _ = sla_run
    line = next(ln for ln in result.outlines if "p99_ms" in ln and "<= 5.00" in ln)
    measured = float(line.split("<= 5.00")[1].split()[0])
    assert 20 <= measured < 200, line


def test_marker_without_measurement_fails(sla_run: tuple[pytest.RunResult, Path]) -> None:
    sla_run[0].stdout.fnmatch_lines(["*has an sla marker but measured nothing*"])


def test_gpu_memory_bound_without_gpu_fails_naming_the_missing_source(
    sla_run: tuple[pytest.RunResult, Path],
) -> None:
    sla_run[0].stdout.fnmatch_lines(["*max_gpu_memory_mb*<= 5000 *-*FAIL", "*-> unavailable: *"])


def test_unknown_model_lists_ready_models(sla_run: tuple[pytest.RunResult, Path]) -> None:
    sla_run[0].stdout.fnmatch_lines(
        ["*model 'no_such_model' is not in the repository of Triton*Models there: *sleepy*"]
    )


def test_failed_requests_are_counted_and_fail_by_default(
    sla_run: tuple[pytest.RunResult, Path],
) -> None:
    sla_run[0].stdout.fnmatch_lines(
        ["*max_error_rate*<= 0 *FAIL", "*requests failed; first error:*"]
    )


def test_summary_lists_every_measurement(sla_run: tuple[pytest.RunResult, Path]) -> None:
    sla_run[0].stdout.fnmatch_lines(
        [
            "*= triton-perf =*",
            "test*model*workload*p50 ms*p99 ms*infer/s*errors*SLA*",
            "*test_pass*sleepy*conc=1 batch=1 grpc*pass*",
            "*test_fail*sleepy*conc=1 batch=1 http*FAIL*",
        ]
    )


def test_junit_xml_carries_the_figures(sla_run: tuple[pytest.RunResult, Path]) -> None:
    _, junit = sla_run
    case = next(c for c in ET.parse(junit).iter("testcase") if c.get("name") == "test_pass")
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert props["triton_perf.0.model"] == "sleepy"
    assert props["triton_perf.0.workload"] == "conc=1 batch=1 grpc"
    assert 20 <= float(props["triton_perf.0.p99_ms"]) < 200
    assert float(props["triton_perf.0.throughput"]) > 0
    assert props["triton_perf.0.gpu_memory_mb"] == "unavailable"
    assert props["triton_perf.0.sla"] == "pass"


# -- the local launcher through the plugin --------------------------------------------------


def test_local_server_from_ini_serves_and_is_gone_after_the_session(
    pytester: pytest.Pytester,
) -> None:
    repo = pytester.path / "repo"
    shutil.copytree(
        EXAMPLE_MODELS / "simple", repo / "simple", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(BROKEN_MODELS / "init_error", repo / "init_error")
    pytester.makeini("[pytest]\ntriton_model_repository = repo\n")
    pytester.makepyfile(
        """
        import json, pathlib
        import pytest

        @pytest.mark.sla(p99_ms=500)
        def test_simple(triton_perf, triton_server, triton_client, triton_grpc_client):
            pathlib.Path("server.json").write_text(json.dumps({"pid": triton_server.pid}))
            assert triton_client.is_model_ready("simple")
            assert triton_grpc_client.is_server_live()
            triton_perf.measure("simple", concurrency=2)

        def test_model_that_failed_to_load(triton_perf):
            triton_perf.measure("init_error")
        """
    )
    result = pytester.runpytest_subprocess(*FAST_OPTIONS)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*model 'init_error' failed to load on Triton*deliberate init failure*"]
    )
    pid = json.loads((pytester.path / "server.json").read_text())["pid"]
    assert not psutil.pid_exists(pid)


def test_help_lists_every_option_with_its_default(pytester: pytest.Pytester) -> None:
    from pytest_triton_perf.settings import OPTIONS

    result = pytester.runpytest_subprocess("--help")
    assert result.ret == pytest.ExitCode.OK, result.stderr.str()
    text = result.stdout.str()
    assert "Triton performance gate (pytest-triton-perf):" in text
    for opt in OPTIONS:
        assert opt.flag in text, opt.flag
    result.stdout.fnmatch_lines(["*p50=5%,p99=10%,throughput=5%*"])
