"""github-action-benchmark's input: one file per direction, in the shape its
``customSmallerIsBetter`` / ``customBiggerIsBetter`` tools read."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from pytest_triton_perf.report.benchmark_json import write_report
from pytest_triton_perf.report.context import ReportContext
from tests.report.factory import mixed_records


def test_two_files_of_entries_the_action_accepts(tmp_path: Path) -> None:
    records = mixed_records()[:2]
    records[0] = dataclasses.replace(records[0], extra_info={"dataset": "val"})
    written = write_report(records, tmp_path / "bench", ReportContext())
    assert sorted(p.name for p in written) == [
        "customBiggerIsBetter.json",
        "customSmallerIsBetter.json",
    ]
    smaller = json.loads((tmp_path / "bench" / "customSmallerIsBetter.json").read_text())
    bigger = json.loads((tmp_path / "bench" / "customBiggerIsBetter.json").read_text())
    for entry in smaller + bigger:  # the action's BenchmarkResult: range and extra are text
        assert set(entry) <= {"name", "unit", "value", "range", "extra"}
        assert isinstance(entry["value"], float) and isinstance(entry["extra"], str)
        assert isinstance(entry.get("range", ""), str)
    names = {e["name"]: e for e in smaller}
    p99 = names["tests/test_gate.py::test_pass [sleepy conc=1 batch=1 grpc] p99"]
    assert p99["unit"] == "ms" and p99["value"] == records[0].result["latency_ms"]["p99"]
    assert p99["range"].startswith("95% CI ")
    assert p99["extra"] == "SLA: pass\nbaseline: pass p99 +2.0%\nextra_info: dataset=val"
    # Latencies and memory are smaller-is-better, throughput bigger; no GPU: no entry.
    assert {e["name"].rsplit(" ", 1)[1] for e in smaller} == {
        "p50",
        "p90",
        "p95",
        "p99",
        "avg",
        "cpu_memory",
    }
    assert [(e["name"].rsplit(" ", 1)[1], e["unit"]) for e in bigger] == [
        ("throughput", "infer/s"),
        ("throughput", "infer/s"),
    ]
    assert write_report([], tmp_path / "none", ReportContext()) == []  # the action refuses []
