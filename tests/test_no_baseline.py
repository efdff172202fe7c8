"""No silent pass: a comparison that finds no baseline follows ``--triton-perf-no-baseline``
and says where it looked. Inner pytest runs (pytester) against the suite's embedded server."""

from __future__ import annotations

import pytest

from pytest_triton_perf.server.local import LocalTritonServer
from tests.test_plugin import remote_args

TEST = """
def test_simple(triton_perf):
    triton_perf.measure("simple")
"""
OTHER_KEY = "1xA100_triton-2.51.0-1234abcd"


@pytest.mark.parametrize("policy", ["fail", "warn", "pass"])
def test_compare_without_a_baseline_follows_the_policy_and_names_the_directory(
    pytester: pytest.Pytester, server: LocalTritonServer, policy: str
) -> None:
    """fail: an empty baseline directory fails the test, naming the directory and the key
    searched; warn: passes with a warning line listing the key directories stored there;
    pass: passes with the plain line."""
    baselines = pytester.path / "baselines"
    baselines.mkdir()
    if policy != "fail":  # baselines of another machine: the summary lists their key
        (baselines / OTHER_KEY).mkdir()
        (baselines / OTHER_KEY / "environment.json").write_text("{}\n")
    pytester.makepyfile(TEST)
    result = pytester.runpytest_subprocess(
        *remote_args(server),
        "--triton-perf-compare",
        "--triton-perf-compare-windows=2",
        "--triton-perf-baseline-dir=baselines",
        f"--triton-perf-no-baseline={policy}",
    )
    searched = "searched baselines for key cpu-*_triton-*"
    if policy == "fail":
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(
            [
                "*No baseline for test_compare_without_a_baseline_*.py::test_simple "
                "(--triton-perf-no-baseline=fail):",
                f"  simple conc=1 batch=1 grpc (history): no baseline: {searched}: it holds no "
                "baselines",
                "  -> record the baselines on this machine with --triton-perf-save and commit "
                "the directory, or point --triton-perf-baseline-dir at the directory that holds "
                "them; or let measurements without a baseline through with "
                "--triton-perf-no-baseline=warn",
                f"no baseline: none of the 1 compared measurement found one ({searched}); key "
                "directories stored there: none; not gated: record it with --triton-perf-save",
            ]
        )
        return
    result.assert_outcomes(passed=1)
    line = (
        f"no baseline: none of the 1 compared measurement found one ({searched}); key "
        f"directories stored there: {OTHER_KEY}; not gated: record it with --triton-perf-save"
    )
    if policy == "warn":
        line = f"warning: {line}, or fail on this with --triton-perf-no-baseline=fail"
    result.stdout.fnmatch_lines([line])
    if policy == "pass":
        assert "warning: no baseline" not in result.stdout.str()
