"""YAML suites through pytest: collection (ids, -k, -m, the pattern option), a breach, a
capacity search, baselines saved and compared, one-line failures at the YAML line, and
collection errors naming file, line and column. Inner runs against the suite's server."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from pytest_triton_perf.errors import ConfigError
from pytest_triton_perf.options import BY_DEST
from pytest_triton_perf.server.local import LocalTritonServer
from tests.test_plugin import remote_args

SUITE = """\
defaults:
  sla: {max_error_rate: 0}
tests:
  - name: simple_ok
    model: simple
    load: {concurrency: 2}
    inputs: [zero, {INPUT0: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]}]
    sla: {p99_ms: 1000}
  - name: simple_breach
    model: simple
    protocol: http
    sla: {p99_ms: 0.001}
  - name: simple_refused
    model: simple
    batch_size: 999
  - name: simple_capacity
    model: simple
    load: {capacity: {limit: 2}}
    sla: {p99_ms: 1000, min_capacity: 1}
    markers: [slow]
"""
INI = "[pytest]\nmarkers =\n    slow: a slow test\n"
#: Baseline runs here are short; minimum effects no noise of a busy machine reaches keep the
#: comparison's verdict off the outcome (the verdict itself is what is checked).
COMPARE = (
    "--triton-perf-compare-windows=3",
    "--triton-perf-min-effect=p50=900%,p99=900%,throughput=90%",
)


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeini(INI)
    (pytester.path / "triton-perf-suite.yaml").write_text(SUITE, encoding="utf-8")
    return pytester


def test_tests_are_collected_with_ids_by_the_pattern_option(project: pytest.Pytester) -> None:
    """Ids are FILE::name; the ini option names the files (-k and -m: see the run below)."""
    (project.path / "perf-other.yml").write_text("tests: [{name: other, model: simple}]")
    (project.path / "perf-not-collected.yaml").write_text("tests: [{name: no, model: simple}]")
    project.makeini(INI + "triton_perf_yaml_pattern = triton-perf*.yaml, perf-*.yml\n")
    result = project.runpytest_inprocess("--collect-only", "-q", "--strict-markers")
    result.stdout.fnmatch_lines(
        [
            "perf-other.yml::other",
            "triton-perf-suite.yaml::simple_ok",
            "triton-perf-suite.yaml::simple_breach",
            "triton-perf-suite.yaml::simple_refused",
            "triton-perf-suite.yaml::simple_capacity",
            "5 tests collected*",
        ]
    )
    assert "::no" not in result.stdout.str()


def test_file_patterns_are_names_not_paths() -> None:
    parse = BY_DEST["yaml_pattern"].parse
    assert parse("--triton-perf-yaml-pattern", "a*.yaml, b*.yml") == ("a*.yaml", "b*.yml")
    with pytest.raises(ConfigError, match=r"--triton-perf-yaml-pattern='suites/\*.yaml': file"):
        parse("--triton-perf-yaml-pattern", "suites/*.yaml")


def test_suite_runs_gates_saves_and_compares(
    project: pytest.Pytester, server: LocalTritonServer
) -> None:
    """One save run (a pass, a breach, a refused argument) and one comparison run (the
    baseline found for the YAML test; a capacity search recorded), as for Python tests."""
    junit = project.path / "junit.xml"
    saved = project.runpytest_inprocess(
        *remote_args(server),
        *COMPARE,
        "-m",
        "not slow",
        "--triton-perf-save",
        f"--junitxml={junit}",
    )
    saved.assert_outcomes(passed=1, failed=2)
    saved.stdout.fnmatch_lines(
        [
            "*SLA breached in triton-perf-suite.yaml::simple_breach: 1 of 2 checks failed",
            "*simple conc=1 batch=1 http*p99_ms*FAIL",
        ]
    )
    # An argument the model refuses: one line at the test's entry in the YAML file.
    saved.stdout.fnmatch_lines(
        ["*triton-perf-suite.yaml:13: InputSpecError: model 'simple' accepts batch_size 1..64*"]
    )
    saved.stdout.fnmatch_lines(["*saved 1 baseline run(s)*"])
    files = [p.name for p in (project.path / ".triton-perf").glob("*/*simple_ok*.json")]
    assert len(files) == 1 and files[0].startswith("triton-perf-suite.yaml_simple_ok"), files
    case = next(c for c in ET.parse(junit).iter("testcase") if c.get("name") == "simple_ok")
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert props["triton_perf.0.model"] == "simple"
    assert props["triton_perf.0.workload"].startswith("conc=2 batch=1 grpc")
    assert props["triton_perf.0.sla"] == "pass"

    results = project.path / "results.json"
    compared = project.runpytest_inprocess(
        *remote_args(server),
        *COMPARE,
        "-k",
        "simple_ok or simple_capacity",
        "--triton-perf-compare",
        f"--triton-perf-json={results}",
    )
    compared.assert_outcomes(passed=2)
    records = {}
    for m in json.loads(results.read_text())["measurements"]:
        records.setdefault(m["test"], []).append(m)
    ok = records["triton-perf-suite.yaml::simple_ok"]
    assert [m["verdict"] in ("pass", "inconclusive", "improvement") for m in ok] == [True], ok
    (capacity,) = records["triton-perf-suite.yaml::simple_capacity"]
    assert capacity["verdict"] == "no baseline"
    assert capacity["analysis"]["capacity"]["capacity"] > 1
    assert capacity["sla_verdict"] == "pass"


def test_bad_suites_are_collection_errors_naming_file_line_and_column(
    pytester: pytest.Pytester,
) -> None:
    """One collection error per file, listing its problems, without a traceback; a marker
    that --strict-markers refuses is named at its line too."""
    (pytester.path / "triton-perf-bad.yaml").write_text(
        "tests:\n  - name: a\n    model: simple\n    load: {concurency: 4}\n    sla: {p99: 30}\n"
    )
    (pytester.path / "triton-perf-m.yaml").write_text(
        "tests:\n  - name: a\n    model: simple\n    markers: [{flaky: {reruns: 2}}]\n"
    )
    (pytester.path / "test_fine.py").write_text("def test_fine(): pass\n")
    result = pytester.runpytest_inprocess("--strict-markers")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(
        [
            "*ERROR collecting triton-perf-bad.yaml*",
            "invalid triton-perf suite:",
            "triton-perf-bad.yaml:4:12: a: unknown key 'concurency' in load. Did you mean "
            "'concurrency'?*",
            "triton-perf-bad.yaml:5:11: a: sla: unknown sla key 'p99'. Did you mean 'p99_ms'?*",
            "*ERROR collecting triton-perf-m.yaml*",
            "invalid triton-perf suite:",
            "triton-perf-m.yaml:4:15: a: markers: 'flaky' not found in `markers` configuration*",
        ]
    )
    assert "Traceback" not in result.stdout.str()
