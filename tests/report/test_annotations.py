"""GitHub Actions annotations of SLA breaches, regressions, inconclusive comparisons and
missing baselines."""

from __future__ import annotations

import dataclasses

import pytest

from pytest_triton_perf.report.annotations import gate_annotations, inconclusive_annotations
from tests.report.factory import comparison, make_record, make_result, mixed_records

LOCATIONS = {
    "tests/test_gate.py::test_slow": ("tests/test_gate.py", 11),
    "tests/test_gate.py::test_shaky": ("tests/test_gate.py", 41),
}


def test_one_warning_per_undecided_measurement_at_the_tests_line() -> None:
    lines = inconclusive_annotations(
        mixed_records(), {"tests/test_gate.py::test_shaky": ("tests/test_gate.py", 41)}
    )
    assert lines == [
        "::warning file=tests/test_gate.py,line=42::triton-perf inconclusive: "
        "tests/test_gate.py::test_shaky sleepy conc=2 batch=1 grpc: p99: windows vary by "
        "35%25 (p99)"
    ]


def test_messages_and_file_names_are_escaped_and_a_missing_location_is_left_out() -> None:
    record = make_record(
        make_result(),
        test="t.py::test_a[x,y]",
        comparisons=(comparison("p50_ms", "inconclusive", 20, 21, 0.3, note="a\nb: 5%"),),
        baseline={"mode": "ab"},
    )
    (line,) = inconclusive_annotations([record], {"t.py::test_a[x,y]": ("dir:x,y/t.py", None)})
    assert line.startswith("::warning file=dir%3Ax%2Cy/t.py::")
    assert line.endswith("p50: a%0Ab: 5%25")
    (bare,) = inconclusive_annotations([record], {})
    assert bare.startswith("::warning::triton-perf inconclusive: t.py::test_a[x,y]")


def test_breaches_and_regressions_are_errors_on_the_tests_line() -> None:
    """test_slow breached its p99 bound and regressed: two errors at its line; the
    inconclusive test and the one without a baseline a warning each; passes and
    improvements nothing."""
    lines = gate_annotations(mixed_records(), LOCATIONS)
    breach, regression, undecided, missing = lines
    assert breach.startswith(
        "::error file=tests/test_gate.py,line=12::triton-perf SLA breach: "
        "tests/test_gate.py::test_slow sleepy conc=1 batch=1 http: p99_ms "
    )
    assert "> bound 25.00 ms, 95%25 interval" in breach
    assert regression.startswith(
        "::error file=tests/test_gate.py,line=12::triton-perf regression: "
        "tests/test_gate.py::test_slow sleepy conc=1 batch=1 http: p99_ms +"
    )
    assert "p=0.0004" in regression and "%0A" not in regression
    assert undecided.startswith("::warning file=tests/test_gate.py,line=42::")
    assert missing == (
        "::warning::triton-perf no baseline: tests/test_gate.py::test_new mlp conc=1 batch=1 grpc"
    )


@pytest.mark.parametrize(
    ("policy", "level"), [("pass", None), ("warn", "warning"), ("fail", "error")]
)
def test_inconclusive_follows_the_policy(policy: str, level: str | None) -> None:
    shaky = mixed_records()[3]
    lines = gate_annotations([shaky], LOCATIONS, policy)
    assert [x.split(" ", 1)[0] for x in lines] == ([f"::{level}"] if level else [])


@pytest.mark.parametrize(
    ("policy", "level"), [("pass", None), ("warn", "warning"), ("fail", "error")]
)
def test_no_baseline_follows_its_policy_and_says_where_it_looked(
    policy: str, level: str | None
) -> None:
    new = dataclasses.replace(
        mixed_records()[4],
        baseline={
            "mode": "history",
            "status": "no baseline",
            "note": "searched .triton-perf for key cpu-x_triton-2.51.0-1a2b3c4d: "
            "the directory does not exist",
        },
    )
    lines = gate_annotations([new], LOCATIONS, no_baseline=policy)
    if level is None:
        assert lines == []
        return
    (line,) = lines
    assert line == (
        f"::{level}::triton-perf no baseline: tests/test_gate.py::test_new mlp conc=1 batch=1 "
        "grpc: searched .triton-perf for key cpu-x_triton-2.51.0-1a2b3c4d: the directory does "
        "not exist"
    )


def test_an_expected_failure_is_not_annotated() -> None:
    slow = dataclasses.replace(mixed_records()[1], outcome="skipped")  # xfail
    assert gate_annotations([slow], LOCATIONS) == []
