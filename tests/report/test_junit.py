"""The perf JUnit file, parsed back with xml.etree."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pytest_triton_perf.report.junit import write_junit
from tests.report.factory import make_record, make_result, mixed_records


def _cases(path: Path) -> dict[tuple[str, str], ET.Element]:
    root = ET.parse(path).getroot()
    return {(c.get("classname", ""), c.get("name", "")): c for c in root.iter("testcase")}


def _props(case: ET.Element) -> dict[str, str]:
    return {p.get("name", ""): p.get("value", "") for p in case.iter("property")}


@pytest.fixture
def junit(tmp_path: Path) -> Path:
    return write_junit(
        tmp_path / "perf.xml", mixed_records(), environment={"triton_version": "2.51.0"}
    )


def test_one_testcase_per_measurement_and_metric(junit: Path) -> None:
    names = sorted(_cases(junit))
    assert names == sorted(
        [
            ("tests/test_gate.py::test_pass", "sleepy conc=1 batch=1 grpc sla:p99_ms"),
            ("tests/test_gate.py::test_pass", "sleepy conc=1 batch=1 grpc baseline:p50_ms"),
            ("tests/test_gate.py::test_pass", "sleepy conc=1 batch=1 grpc baseline:p99_ms"),
            ("tests/test_gate.py::test_slow", "sleepy conc=1 batch=1 http sla:p99_ms"),
            ("tests/test_gate.py::test_slow", "sleepy conc=1 batch=1 http baseline:p50_ms"),
            ("tests/test_gate.py::test_slow", "sleepy conc=1 batch=1 http baseline:p99_ms"),
            ("tests/test_gate.py::test_slow", "sleepy conc=1 batch=1 http baseline:throughput"),
            ("tests/test_gate.py::test_fast", "sleepy conc=4 batch=1 grpc baseline:p99_ms"),
            ("tests/test_gate.py::test_shaky", "sleepy conc=2 batch=1 grpc baseline:p99_ms"),
            ("tests/test_gate.py::test_new", "mlp conc=1 batch=1 grpc baseline"),
        ]
    )
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    assert suite.get("tests") == "10"
    assert suite.get("failures") == "2"
    assert suite.get("skipped") == "2"
    suite_props = {p.get("name"): p.get("value") for p in suite.find("properties") or []}
    assert suite_props == {"environment.triton_version": "2.51.0"}


def test_regression_is_a_failure_with_the_figures_as_properties(junit: Path) -> None:
    case = _cases(junit)[
        ("tests/test_gate.py::test_slow", "sleepy conc=1 batch=1 http baseline:p99_ms")
    ]
    failure = case.find("failure")
    assert failure is not None
    message = failure.get("message", "")
    assert message.startswith("regression: p99_ms +")
    assert "26.50 ms [25.70, 27.30] -> " in message
    assert "p=0.0004, could see >= 6.1%" in message
    assert "fedcba987654" in message  # the baseline's commit
    props = _props(case)
    assert props["verdict"] == "regression"
    assert float(props["baseline"]) == 26.5
    assert float(props["measured"]) > 30
    assert float(props["change_pct"]) > 30
    assert props["mde_pct"] == "6.1"
    assert float(props["p_value"]) == 0.0004
    assert float(props["baseline_interval_low"]) < 26.5 < float(props["baseline_interval_high"])
    assert props["baseline_file"].endswith("test_gate.py__test_pass__sleepy.json")
    assert "commit fedcba987654" in props["baseline_revision"]


def test_sla_breach_is_a_failure_with_bound_and_interval(junit: Path) -> None:
    case = _cases(junit)[("tests/test_gate.py::test_slow", "sleepy conc=1 batch=1 http sla:p99_ms")]
    failure = case.find("failure")
    assert failure is not None
    assert failure.get("message", "").startswith("SLA breached: p99_ms 36.48 ms > bound 25.00 ms")
    props = _props(case)
    assert props["bound"] == "25"
    assert props["verdict"] == "FAIL"
    assert float(props["interval_low"]) < float(props["measured"]) < float(props["interval_high"])
    # The measurement's duration counts once, on its first testcase.
    assert case.get("time") == "8.000000"


def test_passing_checks_have_no_failure(junit: Path) -> None:
    cases = _cases(junit)
    case = cases[("tests/test_gate.py::test_pass", "sleepy conc=1 batch=1 grpc sla:p99_ms")]
    assert case.find("failure") is None and case.find("skipped") is None
    assert _props(case)["verdict"] == "pass"
    improved = cases[
        ("tests/test_gate.py::test_fast", "sleepy conc=4 batch=1 grpc baseline:p99_ms")
    ]
    assert improved.find("failure") is None
    assert _props(improved)["verdict"] == "improvement"


def test_no_baseline_and_inconclusive_are_skipped_with_the_reason(junit: Path) -> None:
    cases = _cases(junit)
    new = cases[("tests/test_gate.py::test_new", "mlp conc=1 batch=1 grpc baseline")]
    skipped = new.find("skipped")
    assert skipped is not None
    assert skipped.get("message", "").startswith("no baseline: run with --triton-perf-save")
    shaky = cases[("tests/test_gate.py::test_shaky", "sleepy conc=2 batch=1 grpc baseline:p99_ms")]
    skipped = shaky.find("skipped")
    assert skipped is not None
    assert "inconclusive: windows vary by 35% (p99)" in skipped.get("message", "")


def test_same_workload_twice_in_a_test_gets_distinct_names(tmp_path: Path) -> None:
    r = make_result()
    records = [make_record(r, index=0), make_record(r, index=1)]
    names = [
        c.get("name") for c in ET.parse(write_junit(tmp_path / "x.xml", records)).iter("testcase")
    ]
    assert names == [
        "sleepy conc=1 batch=1 grpc #0 baseline",
        "sleepy conc=1 batch=1 grpc #1 baseline",
    ]
    # Not compared at all: skipped, saying which options would compare.
    case = next(ET.parse(tmp_path / "x.xml").iter("testcase"))
    skipped = case.find("skipped")
    assert skipped is not None
    assert "not compared" in skipped.get("message", "")


def test_not_compared_and_other_hardware_say_so(tmp_path: Path) -> None:
    r = make_result()
    other = make_record(
        r,
        test="t.py::test_other",
        baseline={
            "mode": "history",
            "status": "no baseline for this hardware",
            "note": "stored for: 1xA100_triton-2.51.0-1234abcd",
        },
    )
    path = write_junit(tmp_path / "x.xml", [make_record(r), other])
    cases = _cases(path)
    plain = cases[("tests/test_gate.py::test_pass", "sleepy conc=1 batch=1 grpc baseline")]
    assert _props(plain)["verdict"] == "not compared"
    hw = cases[("t.py::test_other", "sleepy conc=1 batch=1 grpc baseline")]
    assert _props(hw)["verdict"] == "no baseline for this hardware"
    skipped = hw.find("skipped")
    assert skipped is not None
    assert skipped.get("message") == (
        "no baseline for this hardware: stored for: 1xA100_triton-2.51.0-1234abcd; "
        "run with --triton-perf-save to record one"
    )
