"""The Markdown summary holds the figures, the verdicts and the details of failures."""

from __future__ import annotations

from pathlib import Path

from pytest_triton_perf.report.markdown import append_markdown, render_markdown, write_markdown
from pytest_triton_perf.verdicts import Comparison
from tests.report.factory import make_record, make_result, mixed_records


def _rows(text: str) -> list[list[str]]:
    return [
        [c.strip() for c in line.strip("|").split(" | ")]
        for line in text.splitlines()
        if line.startswith("| `tests/")
    ]


def test_summary_line_counts_every_verdict_and_sla_breaches() -> None:
    text = render_markdown(mixed_records(), title="Perf gate")
    assert text.startswith("## Perf gate\n")
    assert (
        "**5 measurements: 1 pass, 1 regression, 1 improvement, 1 inconclusive, "
        "1 no baseline; SLA: 1 breach**" in text
    )


def test_one_row_per_measurement_with_the_figures() -> None:
    records = mixed_records()
    rows = _rows(render_markdown(records))
    assert len(rows) == 5 + 1  # five rows, plus the SLA breach table's row
    slow = rows[1]
    p = records[1].result["latency_ms"]
    assert slow[:3] == ["`tests/test_gate.py::test_slow`", "sleepy", "conc=1 batch=1 http"]
    assert slow[3] == f"{p['p50']:.2f}" and slow[4] == f"{p['p99']:.2f}"
    assert slow[5] == f"{records[1].result['throughput']:.1f}"
    assert slow[6] == "CPU 512 MB"
    assert slow[7] == "**FAIL**"
    assert slow[8].startswith("**regression p99 +37.")


def test_details_list_regression_and_breach_with_baseline_file_and_revision() -> None:
    text = render_markdown(mixed_records())
    regressions = text.split("### Regressions", 1)[1].split("\n### ", 1)[0]
    assert "#### `tests/test_gate.py::test_slow`: sleepy conc=1 batch=1 http" in regressions
    assert (
        "| p99_ms | 26.50 | [25.70, 27.30] | 36.48 | [35.39, 37.57] | +37.7% | 0.0004 |"
        in regressions
    )
    assert "test_gate.py__test_pass__sleepy.json" in regressions
    assert "commit fedcba987654, 2026-11-20T11:00:00Z" in regressions
    breaches = text.split("### SLA breaches and marginal results", 1)[1]
    assert "| p99_ms | <= 25.00 ms | 36.48 ms | [34.66, 38.30] | **FAIL** |" in breaches
    assert "Accept them with `--triton-perf-save`." in text
    assert "### Inconclusive" in text


def test_pipes_in_test_ids_do_not_break_the_table() -> None:
    record = make_record(make_result(), test="tests/test_x.py::test_a[a|b]")
    line = next(x for x in render_markdown([record]).splitlines() if "test_a" in x)
    assert "`tests/test_x.py::test_a[a\\|b]`" in line
    assert line.count(" | ") == 8  # nine cells


def test_not_compared_shows_a_dash_and_no_nag() -> None:
    text = render_markdown([make_record(make_result())])
    assert "**1 measurement; SLA: 0 breaches**" in text
    assert _rows(text)[0][8] == "-"


def test_improvement_only_run_has_no_regression_section() -> None:
    c = Comparison("p50_ms", "improvement", "ab", 20.0, None, 17.0, None, -15.0, 0.001)
    text = render_markdown([make_record(make_result(), comparisons=(c,), baseline={"mode": "ab"})])
    assert "### Regressions" not in text
    assert "| p50_ms | 20.00 | - | 17.00 | - | -15.0% | 0.0010 |" in text


def test_write_and_append_to_step_summary(tmp_path: Path) -> None:
    text = render_markdown(mixed_records())
    path = write_markdown(tmp_path / "sub" / "perf.md", text)
    assert path.read_text() == text
    summary = tmp_path / "step_summary.md"
    summary.write_text("earlier step\n")
    assert append_markdown(summary, text) == summary
    assert summary.read_text() == "earlier step\n\n" + text


def test_details_say_what_each_comparison_could_see_and_passes_are_listed() -> None:
    text = render_markdown(mixed_records())
    regressions = text.split("### Regressions", 1)[1].split("\n### ", 1)[0]
    assert "| p-value | could see | note |" in regressions
    assert "| +37.7% | 0.0004 | 6.1% |" in regressions
    passes = text.split("### Passes", 1)[1]
    assert (
        "- `tests/test_gate.py::test_pass`: sleepy conc=1 batch=1 grpc: would have flagged "
        ">= 3.8% on p50, 7.3% on p99; load 3.2, steal 0%" in passes
    )
    # The passing metric of a measurement that regressed on another.
    assert (
        "- `tests/test_gate.py::test_slow`: sleepy conc=1 batch=1 http: would have flagged "
        ">= 4.2% on p50" in passes
    )


def test_the_pass_policy_leaves_undecided_metrics_to_the_summary() -> None:
    warn = render_markdown(mixed_records())
    quiet = render_markdown(mixed_records(), inconclusive="pass")
    assert "### Inconclusive" in warn and "windows vary by 35%" in warn
    assert "### Inconclusive" not in quiet and "windows vary by 35%" not in quiet
    assert "1 inconclusive" in quiet  # the count line still says it


def test_measurements_without_a_baseline_say_where_it_was_looked_for() -> None:
    note = (
        "searched .triton-perf for key cpu-X_triton-2.51.0-1a2b3c4d: the directory does not exist"
    )
    record = make_record(
        make_result(), baseline={"mode": "history", "status": "no baseline", "note": note}
    )
    warn = render_markdown([record])
    assert "### No baseline" in warn
    assert (
        f"- `tests/test_gate.py::test_pass`: sleepy conc=1 batch=1 grpc: no baseline: {note}"
        in (warn)
    )
    quiet = render_markdown([record], no_baseline="pass")
    assert "### No baseline" not in quiet and "1 no baseline" in quiet
