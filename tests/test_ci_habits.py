"""Habits of pytest-benchmark and CI users, through inner pytest runs against the real
server: --triton-perf-disable / -skip / -only, the terminal table's columns and order, CSV
and github-action-benchmark files, GitHub annotations, ``triton_perf.extra_info``."""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET

import pytest

from pytest_triton_perf.baseline.store import BaselineStore
from pytest_triton_perf.server.local import LocalTritonServer
from tests.conftest import FAST_OPTIONS

MIXED = """
import pytest

@pytest.mark.sla(p99_ms=200)
def test_marked_only():
    pass

def test_measures(triton_perf):
    triton_perf.measure("simple")

def test_plain():
    pass
"""


def remote_args(server: LocalTritonServer) -> list[str]:
    return [f"--triton-url={server.http_url}", f"--triton-grpc-url={server.grpc_url}"]


@pytest.mark.parametrize(
    ("option", "passed", "skipped", "reason"),
    [
        ("--triton-perf-skip", ["test_plain"], 2, "perf test (--triton-perf-skip)"),
        ("--triton-perf-only", [], 1, "not a perf test (--triton-perf-only)"),
    ],
)
def test_skip_and_only_split_the_perf_tests_from_the_others(
    pytester: pytest.Pytester, option: str, passed: list[str], skipped: int, reason: str
) -> None:
    """A perf test uses triton_perf or carries an sla marker. No server is needed to skip
    one (the repository does not exist: a start would fail the test)."""
    pytester.makepyfile(test_mixed=MIXED)
    result = pytester.runpytest_inprocess(
        option, "-rs", "--triton-model-repository=/nonexistent", "-p", "no:cacheprovider"
    )
    outcomes = result.parseoutcomes()
    assert outcomes.get("skipped") == skipped
    result.stdout.fnmatch_lines([f"SKIPPED * {reason}"])
    if option == "--triton-perf-only":
        # The marked test without a measurement fails as always; the measuring one errors
        # on the missing repository: both ran, the plain one did not.
        assert outcomes.get("failed", 0) + outcomes.get("errors", 0) == 2
    else:
        assert outcomes.get("passed") == len(passed)


def test_skip_and_only_together_are_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_mixed=MIXED)
    result = pytester.runpytest_inprocess("--triton-perf-skip", "--triton-perf-only")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--triton-perf-skip * and --triton-perf-only * exclude each*"])


DISABLED = """
import pytest

@pytest.mark.sla(p99_ms=0.001, min_throughput=10**9)
def test_impossible_sla_is_not_checked(triton_perf):
    result = triton_perf.measure("sleepy", concurrency=[1, 2], windows=5, window_s=2)
    for r in result:
        assert len(r.windows) == 1 and r.duration_s < 0.5 and 0 < r.requests < 40

def test_failing_requests_fail_the_smoke_check(triton_perf):
    triton_perf.measure("flaky", concurrency=2)
"""


def test_disable_shrinks_measurements_to_smoke_checks_without_verdicts(
    pytester: pytest.Pytester, server: LocalTritonServer
) -> None:
    pytester.makepyfile(test_disabled=DISABLED)
    result = pytester.runpytest_inprocess(
        *remote_args(server),
        "--triton-perf-disable",
        "--triton-perf-save",
        "--triton-perf-json=results.json",
        "-p",
        "no:cacheprovider",
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*Smoke check of test_disabled.py::test_failing_requests_fail_the_smoke_check "
            "failed (--triton-perf-disable*",
            "*flaky conc=2 batch=1 grpc: * of * request(s) failed: *deliberate failure*",
            "--triton-perf-disable: --triton-perf-save ignored",
            "measurements disabled (--triton-perf-disable): 3 smoke check(s) in 2 test(s), "
            "a few requests each; no SLA checks, comparisons or baselines",
        ]
    )
    assert json.loads((pytester.path / "results.json").read_text())["measurements"] == []
    assert not (pytester.path / ".triton-perf").exists()


EXTRA = """
import pytest

@pytest.mark.sla(p99_ms=5)
def test_breach(triton_perf):
    triton_perf.extra_info["dataset"] = "val2017"
    triton_perf.measure("sleepy")
    triton_perf.extra_info.update(shards=4)

def test_fast(triton_perf):
    triton_perf.extra_info = {"note": "fast one"}
    triton_perf.measure("simple", concurrency=2)

def test_bad_extra_info(triton_perf):
    triton_perf.measure("simple")
    triton_perf.extra_info["when"] = object()
"""


def test_extra_info_columns_sort_files_and_annotations(
    pytester: pytest.Pytester, server: LocalTritonServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One inner run under GitHub Actions: extra_info stored in the results, the JUnit
    file, the CSV, the benchmark files and the baseline; the chosen columns sorted; the
    SLA breach annotated as an error on the test's line."""
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    pytester.makepyfile(test_extra=EXTRA)
    result = pytester.runpytest_inprocess(
        *remote_args(server),
        *FAST_OPTIONS,
        "--triton-perf-compare-windows=2",
        "--triton-perf-save",
        "--triton-perf-json=results.json",
        "--triton-perf-junit=junit.xml",
        "--triton-perf-csv=perf.csv",
        "--triton-perf-benchmark-json=bench",
        "--triton-perf-columns=test,p90,throughput,queue,extra",
        "--triton-perf-sort=-throughput",
        "-p",
        "no:cacheprovider",
    )
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*triton_perf.extra_info of test_extra.py::test_bad_extra_info: 'when' = <object*"
            "cannot be stored as JSON*",
            "test * p90 ms * infer/s * queue ms * extra_info",
            "test_extra.py::test_fast * note=fast one",
            "test_extra.py::test_breach * dataset=val2017, shards=4",
            "extra_info: test_extra.py::test_breach: dataset=val2017, shards=4",
            "::error file=test_extra.py,line=*::triton-perf SLA breach: "
            "test_extra.py::test_breach sleepy conc=1 batch=1 grpc: p99_ms * > bound 5.00 ms*",
            "CSV: *perf.csv",
            "github-action-benchmark: 2 file(s) in *bench",
        ]
    )
    doc = json.loads((pytester.path / "results.json").read_text())
    extras = {m["test"].split("::")[1]: m["extra_info"] for m in doc["measurements"]}
    assert extras == {
        "test_breach": {"dataset": "val2017", "shards": 4},
        "test_fast": {"note": "fast one"},
    }
    props = {
        p.get("name"): p.get("value")
        for case in ET.parse(pytester.path / "junit.xml").getroot().iter("testcase")
        if case.get("classname", "").endswith("test_breach")
        for p in case.iter("property")
    }
    assert (props["extra_info.dataset"], props["extra_info.shards"]) == ("val2017", "4")
    with (pytester.path / "perf.csv").open(newline="") as f:
        rows = {r["test"].split("::")[1]: r for r in csv.DictReader(f)}
    assert json.loads(rows["test_fast"]["extra_info"]) == {"note": "fast one"}
    assert rows["test_breach"]["sla"] == "FAIL"
    bigger = json.loads((pytester.path / "bench" / "customBiggerIsBetter.json").read_text())
    assert {e["name"].split(" ")[0].split("::")[1] for e in bigger} == {"test_breach", "test_fast"}
    # Saved: the passing test's run carries its extra_info; the failing tests' are not saved.
    (path,) = BaselineStore(pytester.path / ".triton-perf").iter_files()
    (run,) = json.loads(path.read_text())["runs"]
    assert run["extra_info"] == {"note": "fast one"}
