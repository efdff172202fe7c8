"""The CSV file: one row per measurement, every figure in full, extra_info as JSON."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

from pytest_triton_perf.report.context import ReportContext
from pytest_triton_perf.report.csv_report import HEADER, write_report
from tests.report.factory import mixed_records


def test_one_row_per_measurement_with_figures_verdicts_and_extra_info(tmp_path: Path) -> None:
    records = mixed_records()
    records[1] = dataclasses.replace(records[1], extra_info={"dataset": "val", "n": 4})
    (path,) = write_report(records, tmp_path / "out" / "perf.csv", ReportContext())
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(HEADER)
    assert [r["test"] for r in rows] == [r.test for r in records]
    slow = rows[1]
    latency = records[1].result["latency_ms"]
    assert float(slow["p99_ms"]) == latency["p99"] and float(slow["max_ms"]) == latency["max"]
    assert float(slow["throughput"]) == records[1].result["throughput"]
    assert (slow["protocol"], slow["concurrency"], slow["request_rate"]) == ("http", "1", "")
    assert (slow["sla"], slow["baseline"], slow["outcome"]) == ("FAIL", "regression", "failed")
    assert slow["change"].startswith("p99 +37.")
    assert json.loads(slow["extra_info"]) == {"dataset": "val", "n": 4}
    assert rows[0]["gpu_memory_mb"] == "" and rows[0]["extra_info"] == ""  # unmeasured: empty
    assert rows[4]["baseline"] == "no baseline"
