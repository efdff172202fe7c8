"""GitHub Actions annotations of inconclusive comparisons."""

from __future__ import annotations

from pytest_triton_perf.report.annotations import inconclusive_annotations
from tests.report.factory import comparison, make_record, make_result, mixed_records


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
