"""A co-location group and a memory footprint in every report: terminal (group table; the
footprint's stages, sources and placement at -v), Markdown, JSON (written and read back) and
the group's plot. Records built from real results (``tests/report/factory.py``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pytest_triton_perf.colocation import GroupOutcome, Rounds, interference_of
from pytest_triton_perf.footprint import Footprint, MemorySample
from pytest_triton_perf.report.json_report import read_results, write_json
from pytest_triton_perf.report.markdown import render_markdown
from pytest_triton_perf.report.plots import write_plots
from pytest_triton_perf.report.terminal import render_terminal
from pytest_triton_perf.verdicts import MeasurementRecord
from tests.report.factory import document, make_record, make_result

TEST = "tests/test_group.py::test_together"


def _group_records() -> list[MeasurementRecord]:
    """Two models together; `a` is 50% slower beside `b`, `b` unaffected."""
    rounds = Rounds()
    for i in range(4):
        for model, together_ms in (("a", 15.0), ("b", 20.0)):
            rounds.add_alone(
                model, make_result(model, median_ms=10.0 * (1 + (model == "b")), windows=1, seed=i)
            )
            rounds.add_together(
                {model: make_result(model, median_ms=together_ms, windows=1, seed=10 + i)}
            )
    results = {
        m: dataclasses.replace(
            make_result(m, seed=20 + k),
            together_with=(("b",) if m == "a" else ("a",)),
            interference=interference_of(m, rounds, ["b"] if m == "a" else ["a"]),
        )
        for k, m in enumerate(("a", "b"))
    }
    outcome = GroupOutcome(results, rounds=4, elapsed_s=12.0, design="together, then 4 rounds")
    records = [make_record(r, test=TEST, index=i) for i, r in enumerate(results.values())]
    records[0] = dataclasses.replace(records[0], analysis={"group": outcome.analysis(0.5)})
    return records


def _footprint_record() -> MeasurementRecord:
    fp = Footprint(
        model="hog",
        loaded_as="hog__fp",
        cpu_memory_mb=215.0,
        gpu_memory_mb=None,
        samples=(
            MemorySample("before load", 480e6),
            MemorySample("after load", 690e6),
            MemorySample("under load", 695e6),
        ),
        unavailable=(("gpu_memory_mb", "no GPU memory source: NVML: not found"),),
        cpu_source="PSS of the server process 42 and its descendants (9 processes)",
        workload="conc=1 batch=1 grpc",
        result=make_result("hog", seed=7),
    )
    record = fp.record()
    assert record is not None
    return dataclasses.replace(
        make_record(record, test="tests/test_fp.py::test_hog"), analysis={"footprint": fp.to_dict()}
    )


def test_the_terminal_shows_the_group_table_and_the_footprint() -> None:
    records = [*_group_records(), _footprint_record()]
    lines = render_terminal(records, verbosity=0)
    text = "\n".join(lines)
    assert f"co-location: {TEST}: a + b together: a conc=1 batch=1 grpc, b conc=1" in text
    (row_a,) = [x for x in lines if x.startswith("  a ")]
    assert "+5" in row_a and "-3" in row_a  # p99 about +50%, throughput about -33%
    assert "footprint of hog (loaded as hog__fp): host +215.0 MB, GPU unavailable (no GPU " in text
    assert "placement" not in text  # stages and placement at -v only
    verbose = "\n".join(render_terminal(records, verbosity=1))
    assert "design: together, then 4 rounds (12 s)" in verbose
    assert "before load" in verbose and "PSS of the server process 42" in verbose
    assert "    resources:  # Kubernetes container" in verbose
    assert "      memory: 206Mi" in verbose
    assert "# TMS: no GPU memory to declare: no GPU memory source" in verbose
    assert "footprint (under load: conc=1 batch=1 grpc)" in verbose


def test_markdown_has_a_co_location_and_a_footprint_section() -> None:
    text = render_markdown([*_group_records(), _footprint_record()])
    assert "### Co-location" in text and "| model | p99 ms | infer/s | alone p99 |" in text
    assert "### Memory footprint" in text and "```yaml" in text
    assert "| stage | host MB |" in text and "| after load | 690 |" in text


def test_the_records_survive_the_results_file(tmp_path: Path) -> None:
    records = [*_group_records(), _footprint_record()]
    path = tmp_path / "results.json"
    write_json(path, document(records))
    _, back = read_results(path)
    assert [r.analysis.keys() for r in back] == [r.analysis.keys() for r in records]
    assert render_terminal(back, 1) == render_terminal(records, 1)
    assert back[0].result["interference"]["rounds"] == 4


def test_a_group_with_interference_gets_its_plot(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    written = write_plots(tmp_path, _group_records())
    names = sorted(p.name for p in written)
    assert "colocation-tests_test_group.py_test_together-0.png" in names
    assert (tmp_path / "colocation-tests_test_group.py_test_together-0.png").stat().st_size > 5000
