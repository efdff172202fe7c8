"""The terminal summary at -qq, -q, default and -v."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from pytest_triton_perf.report.terminal import render_terminal
from pytest_triton_perf.verdicts import MeasurementRecord
from tests.report.factory import make_record, make_result, mixed_records

COUNT_LINE = (
    "triton-perf: 5 measurements: 1 pass, 1 regression, 1 improvement, 1 inconclusive, "
    "1 no baseline; SLA: 1 breach"
)


def _row(lines: list[str], test: str) -> list[str]:
    return re.split(r"\s{2,}", next(x for x in lines if x.startswith(test)))


def test_default_has_every_row_and_the_hints() -> None:
    lines = render_terminal(mixed_records(), 0)
    assert re.split(r"\s{2,}", lines[0]) == [
        "test",
        "model",
        "workload",
        "p50 ms",
        "p99 ms",
        "infer/s",
        "errors",
        "SLA",
        "baseline",
    ]
    assert len([x for x in lines if x.startswith("tests/")]) == 5
    slow = _row(lines, "tests/test_gate.py::test_slow")
    assert slow[1:3] == ["sleepy", "conc=1 batch=1 http"]
    assert slow[-2:] == ["FAIL", "regression p99 +37.7%"]
    assert _row(lines, "tests/test_gate.py::test_new")[-1] == "no baseline"
    assert (
        "improvement: sleepy conc=4 batch=1 grpc: p99 -12.3% — accept it with --triton-perf-save"
        in lines
    )
    assert any(
        x.startswith("inconclusive: sleepy conc=2 batch=1 grpc: measurement unstable")
        for x in lines
    )
    assert (
        "warning: no baseline: 1 measurement; not gated: record it with --triton-perf-save, "
        "or fail on this with --triton-perf-no-baseline=fail"
    ) in lines
    assert lines[-1] == COUNT_LINE
    # The failing test prints its own regression screen; the default summary does not repeat it.
    assert not any(x.startswith("regression:") for x in lines)


def test_verbose_adds_memory_columns_and_regression_details() -> None:
    lines = render_terminal(mixed_records(), 1)
    header = re.split(r"\s{2,}", lines[0])
    assert header[6:8] == ["GPU MB", "CPU MB"]
    row = _row(lines, "tests/test_gate.py::test_pass")
    assert row[6:8] == ["-", "512"]  # no GPU: "-", never 0
    regression = next(x for x in lines if x.startswith("regression:"))
    assert regression.startswith("regression: tests/test_gate.py::test_slow sleepy conc=1")
    assert "26.50 ms [25.70, 27.30] -> 36.48 ms [35.39, 37.57], p=0.0004" in regression
    assert ", could see >= 6.1% (" in regression
    assert "test_gate.py__test_pass__sleepy.json @ commit fedcba987654" in regression
    improvement = next(x for x in lines if x.startswith("improvement:"))
    assert "p=0.0010" in improvement and "A/B reference" in improvement
    assert "  tests/test_gate.py::test_new mlp conc=1 batch=1 grpc: no baseline" in lines


def test_quiet_shows_only_rows_that_need_attention() -> None:
    lines = render_terminal(mixed_records(), -1)
    tests = [x.split()[0] for x in lines if x.startswith("tests/")]
    assert tests == [
        "tests/test_gate.py::test_slow",
        "tests/test_gate.py::test_fast",
        "tests/test_gate.py::test_shaky",
    ]
    assert lines[-1] == COUNT_LINE
    assert not any(x.startswith(("improvement:", "no baseline:")) for x in lines)


@pytest.mark.parametrize("verbosity", [-2, -3])
def test_very_quiet_is_the_count_line_alone(verbosity: int) -> None:
    assert render_terminal(mixed_records(), verbosity) == [COUNT_LINE]


def test_quiet_with_nothing_to_report_is_the_count_line() -> None:
    records = [make_record(make_result(), sla_verdict="pass")]
    assert render_terminal(records, -1) == ["triton-perf: 1 measurement; SLA: 0 breaches"]


def test_not_compared_runs_do_not_nag_about_baselines() -> None:
    lines = render_terminal([make_record(make_result())], 0)
    assert _row(lines, "tests/test_gate.py::test_pass")[-1] == "-"
    assert not any("no baseline" in x for x in lines)


def test_baseline_for_other_hardware_is_named_at_default_verbosity() -> None:
    record = make_record(
        make_result(),
        baseline={
            "mode": "history",
            "status": "no baseline for this hardware",
            "note": "stored for: 1xA100_triton-2.51.0-1234abcd",
        },
    )
    lines = render_terminal([record], 0)
    assert _row(lines, "tests/test_gate.py::test_pass")[-1] == "no baseline for this hardware"
    assert (
        "warning: no baseline: 1 measurement; not gated: record it with --triton-perf-save, "
        "or fail on this with --triton-perf-no-baseline=fail"
    ) in lines
    assert (
        "  sleepy conc=1 batch=1 grpc: no baseline for this hardware "
        "(stored for: 1xA100_triton-2.51.0-1234abcd)" in lines
    )


def _searched(test: str) -> MeasurementRecord:
    return make_record(
        make_result(),
        test=test,
        baseline={
            "mode": "history",
            "status": "no baseline",
            "dir": "baselines",
            "key_dir": "cpu-X_triton-2.51.0-1a2b3c4d",
            "stored_keys": ["1xA100_triton-2.51.0-1234abcd"],
            "note": "searched baselines for key cpu-X_triton-2.51.0-1a2b3c4d: no such key "
            "directory; stored there: 1xA100_triton-2.51.0-1234abcd",
        },
    )


@pytest.mark.parametrize(("policy", "prefix"), [("warn", "warning: "), ("pass", "")])
def test_no_measurement_with_a_baseline_is_one_line_naming_the_stored_keys(
    policy: str, prefix: str
) -> None:
    records = [_searched("t.py::test_a"), _searched("t.py::test_b")]
    lines = render_terminal(records, 0, no_baseline=policy)
    line = (
        f"{prefix}no baseline: none of the 2 compared measurements found one (searched "
        "baselines for key cpu-X_triton-2.51.0-1a2b3c4d); key directories stored there: "
        "1xA100_triton-2.51.0-1234abcd; not gated: record them with --triton-perf-save"
    )
    if policy == "warn":
        line += ", or fail on this with --triton-perf-no-baseline=fail"
    assert line in lines
    verbose = render_terminal(records, 1, no_baseline=policy)
    assert (
        "  t.py::test_a sleepy conc=1 batch=1 grpc: no baseline (searched baselines for key "
        "cpu-X_triton-2.51.0-1a2b3c4d: no such key directory; stored there: "
        "1xA100_triton-2.51.0-1234abcd)" in verbose
    )
    # -q: the warning stays (a run that gated nothing must not look green); "pass" drops it.
    quiet = render_terminal(records, -1, no_baseline=policy)
    assert any(x.startswith("warning: no baseline") for x in quiet) == (policy == "warn")


def test_nothing_measured_prints_nothing() -> None:
    assert render_terminal([], 1) == []


def test_a_measurement_where_every_request_failed_renders_everywhere(tmp_path: Path) -> None:
    from pytest_triton_perf.measure.result import PerfResult, WindowResult, Workload
    from pytest_triton_perf.report.junit import write_junit
    from pytest_triton_perf.report.markdown import render_markdown
    from pytest_triton_perf.verdicts import MeasurementRecord, SlaRecord

    window = WindowResult(0, 1.0, 10, 10, 0, 0.0, None)
    result = PerfResult(
        "broken", None, Workload("broken"), 0.0, None, 10, 10, (window,), 1.0, False
    )
    record = MeasurementRecord(
        test="t.py::test_broken",
        index=0,
        label="broken conc=1 batch=1 grpc",
        result=result.to_dict(),
        environment={},
        sla=(SlaRecord("max_error_rate", 0.0, 1.0, False),),
        sla_verdict="FAIL",
    )
    row = _row(render_terminal([record], 1), "t.py::test_broken")
    assert row[3:5] == ["-", "-"]  # no latency, not 0
    assert row[-3:] == ["10", "FAIL", "-"]
    assert "| - | - | 0 |" in render_markdown([record])
    xml = write_junit(tmp_path / "j.xml", [record]).read_text()
    assert 'message="SLA breached: max_error_rate 100% &gt; bound 0%"' in xml


def test_verbose_says_what_a_pass_could_have_seen_and_the_machines_load() -> None:
    lines = render_terminal(mixed_records(), 1)
    assert (
        "pass: tests/test_gate.py::test_pass sleepy conc=1 batch=1 grpc: would have flagged "
        ">= 3.8% on p50, 7.3% on p99; load 3.2, steal 0%" in lines
    )
    # The passing metrics of a measurement with another verdict too (p50 of the regression).
    assert any(
        x == "pass: tests/test_gate.py::test_slow sleepy conc=1 batch=1 http: would have "
        "flagged >= 4.2% on p50"
        for x in lines
    )
    # Not at default verbosity.
    assert not any(x.startswith("pass:") for x in render_terminal(mixed_records(), 0))


def test_an_underpowered_comparison_reads_as_such() -> None:
    from tests.report.factory import comparison

    note = (
        "underpowered: could only see >= 12% on p50 (the smallest change that counts: 5.0%); "
        "about 96 s of measurement would be needed (48 windows of 1 s per arm)"
    )
    record = make_record(
        make_result(),
        comparisons=(comparison("p50_ms", "inconclusive", 20.0, 20.2, 0.4, note, mde=12.0),),
        baseline={"mode": "ab", "status": "compared"},
    )
    line = next(x for x in render_terminal([record], 0) if x.startswith("inconclusive:"))
    assert line.startswith(f"inconclusive: sleepy conc=1 batch=1 grpc: {note}; not gated")


def test_a_suspected_shift_heads_an_inconclusive_record_before_a_noisy_metric() -> None:
    """History's suspected regression (seen by this session only) is what the next session
    will confirm; a metric whose windows were too noisy decides nothing, however small its
    p-value (seen in CI: a pipeline's noisy p95 hid the suspected p50 it was tested for)."""
    from tests.report.factory import comparison

    noisy = comparison(
        "p95_ms",
        "inconclusive",
        10.0,
        27.0,
        1e-9,
        "windows too noisy to decide: 17% window-to-window variation (limit 15%)",
    )
    suspected = comparison(
        "p50_ms",
        "inconclusive",
        8.0,
        13.8,
        1e-4,
        "suspected regression (+72.5%), not yet confirmed: seen in this session only",
    )
    for order in ((noisy, suspected), (suspected, noisy)):
        record = make_record(
            make_result(), comparisons=order, baseline={"mode": "history", "status": "compared"}
        )
        lines = render_terminal([record], 0)
        line = next(x for x in lines if x.startswith("inconclusive:"))
        assert "suspected regression (+72.5%)" in line and "too noisy" not in line
        assert any("inconclusive p50 +72.5%" in x for x in lines)
    # Without a suspicion the smallest p-value heads it, as for every other verdict.
    record = make_record(
        make_result(),
        comparisons=(noisy, dataclasses.replace(suspected, note="undecided")),
        baseline={"mode": "history", "status": "compared"},
    )
    assert any("inconclusive p95 +170.0%" in x for x in render_terminal([record], 0))


def test_a_sequence_model_gets_its_sequences_line_and_notes() -> None:
    from pytest_triton_perf.measure.result import LatencyStats, ServerBreakdown

    base = make_result(model="accumulator", concurrency=4)
    result = dataclasses.replace(
        base,
        workload=dataclasses.replace(
            base.workload, sequence_length=20, sequence_length_variation=0.2
        ),
        sequences=374,
        sequence_errors=0,
        sequence_latency_ms=LatencyStats(40.0, 50.0, 55.0, 61.5, 42.0, 30.0, 70.0, 374),
        sequence_slots=16,
        server=ServerBreakdown(7525, 0, 7525, 4493, 0.132, 0.017, 0.106, 0.081),
        notes=(
            "sequence model: sequence_length not given, driven with perf_analyzer's default",
            "the server was not idle",
        ),
    )
    lines = render_terminal([make_record(result, test="t.py::test_acc")], 0)
    assert _row(lines, "t.py::test_acc")[1:3] == ["accumulator", "conc=4 batch=1 grpc seq=20+-20%"]
    i = lines.index(
        "sequences: t.py::test_acc accumulator conc=4 batch=1 grpc seq=20+-20%: 374 sequences"
        " (0 with errors); sequence latency p50 40.00 ms, p99 61.50 ms; 16 sequence slots;"
        " server queue 0.132 ms/request"
    )
    assert lines[i + 1] == (
        "  note: sequence model: sequence_length not given, driven with perf_analyzer's default"
    )
    assert "the server was not idle" not in lines[i + 2]
    # Other models get no such line.
    assert not any(x.startswith("sequences:") for x in render_terminal(mixed_records(), 0))


# -- --triton-perf-columns and --triton-perf-sort ---------------------------------------------


def test_every_column_of_the_option_is_rendered() -> None:
    """The option's names (``options/parsers.py``) and the table's columns are the same."""
    from pytest_triton_perf.options.parsers import COLUMNS as NAMES
    from pytest_triton_perf.report.terminal import COLUMNS

    assert tuple(COLUMNS) == NAMES
    lines = render_terminal(mixed_records(), 0, columns=NAMES)
    assert len(re.split(r"\s{2,}", lines[0])) == len(NAMES)


def test_chosen_columns_in_their_order_and_rows_sorted() -> None:
    import dataclasses

    records = mixed_records()
    records[0] = dataclasses.replace(records[0], extra_info={"dataset": "val", "n": 4})
    columns = ("test", "p90", "p95", "avg", "gpu_memory", "cpu_memory", "requests", "extra")
    lines = render_terminal(records, 1, columns=columns, sort="-p99")
    assert re.split(r"\s{2,}", lines[0]) == [
        "test",
        "p90 ms",
        "p95 ms",
        "avg ms",
        "GPU MB",
        "CPU MB",
        "requests",
        "extra_info",
    ]
    tests = [x.split()[0] for x in lines[1:6]]
    p99 = {r.test: r.result["latency_ms"]["p99"] for r in records}
    assert tests == sorted(p99, key=lambda t: -p99[t])  # slowest first
    row = _row(lines, "tests/test_gate.py::test_pass")
    assert row[1] == f"{records[0].result['latency_ms']['p90']:.2f}"
    assert row[4:] == ["-", "512", "800", "dataset=val, n=4"]
    ascending = render_terminal(records, 0, sort="throughput")
    assert [x.split()[0] for x in ascending[1:6]][-1] == "tests/test_gate.py::test_fast"
    # -q keeps the chosen columns and order for the rows that need attention.
    quiet = render_terminal(records, -1, columns=("test", "p99"), sort="-p99")
    assert re.split(r"\s{2,}", quiet[0]) == ["test", "p99 ms"]
    assert quiet[1].startswith("tests/test_gate.py::test_slow")


def test_server_queue_column_and_a_missing_value_sorted_last() -> None:
    import dataclasses

    records = mixed_records()[:3]
    server = {"queue_ms": 1.5, "compute_infer_ms": 19.25}
    records[1] = dataclasses.replace(records[1], result={**records[1].result, "server": server})
    lines = render_terminal(records, 0, columns=("test", "queue", "compute"), sort="queue")
    assert re.split(r"\s{2,}", lines[0]) == ["test", "queue ms", "compute ms"]
    assert _row(lines, "tests/test_gate.py::test_slow")[1:] == ["1.50", "19.25"]
    assert lines[1].startswith("tests/test_gate.py::test_slow")  # the only value: first
    assert _row(lines, "tests/test_gate.py::test_pass")[1:] == ["-", "-"]


def test_extra_info_has_a_line_per_test() -> None:
    import dataclasses

    records = [
        dataclasses.replace(r, extra_info={"commit": "4f2a", "batch": [1, 2]})
        for r in mixed_records()[:2]
    ]
    lines = render_terminal(records, 0)
    assert "extra_info: tests/test_gate.py::test_pass: commit=4f2a, batch=[1, 2]" in lines
    assert not any("extra_info" in x for x in render_terminal(records, -1))


def test_the_summary_states_the_expected_false_alarms_of_the_paired_ab_verdicts() -> None:
    from tests.report.factory import comparison

    def ab(test: str) -> object:
        return make_record(
            make_result(),
            test=test,
            comparisons=(comparison("p50_ms", "pass", 20.0, 20.1, 0.5, "", mde=3.0),),
            baseline={
                "mode": "ab",
                "status": "compared",
                "design": {"alpha": 0.01, "pass_alpha": 0.05},
            },
        )

    lines = render_terminal([ab("t.py::a"), ab("t.py::b"), ab("t.py::c")], 0)  # type: ignore[list-item]
    line = next(x for x in lines if x.startswith("error control:"))
    assert "Holm" in line and "alpha 0.01" in line
    assert "at most 0.02 false alarms expected per measurement, 0.06 over the 3" in line
    assert "a change at a metric's margin passes at most 0.05 of the time" in line
    # History mode has no such line.
    plain = make_record(
        make_result(),
        comparisons=(comparison("p50_ms", "pass", 20.0, 20.1, 0.5, "", mde=3.0),),
        baseline={"mode": "history", "status": "compared"},
    )
    assert not any(x.startswith("error control:") for x in render_terminal([plain], 0))
