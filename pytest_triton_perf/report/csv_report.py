"""The CSV file (``--triton-perf-csv=PATH``): one row per measurement, for spreadsheets and
the tools that read pytest-benchmark's ``--benchmark-csv``.

Columns: the test and its measurement (``test``, ``index``, ``label``, ``outcome``), the
workload, every figure of the metric catalogue in its unit (``p50_ms`` ... ``error_rate``),
the latency's minimum and maximum, the server's queue and compute times per request, the
verdicts (``sla``, ``baseline`` and the change of its headline metric) and the test's
``triton_perf.extra_info`` as a JSON object. Numbers are written in full; a figure that was
not measured is an empty cell.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pytest_triton_perf import metrics
from pytest_triton_perf.files import atomic_write_text
from pytest_triton_perf.report.context import ReportContext
from pytest_triton_perf.report.text import (
    SHORT_METRIC,
    headline,
    model_name,
    verdict_of,
    was_compared,
)
from pytest_triton_perf.verdicts import MeasurementRecord

WORKLOAD = ("protocol", "batch_size", "concurrency", "request_rate", "arrival")
SERVER = ("queue_ms", "compute_input_ms", "compute_infer_ms", "compute_output_ms")
HEADER = (
    "test",
    "index",
    "label",
    "outcome",
    "model",
    *WORKLOAD,
    "requests",
    "errors",
    *(m.name for m in metrics.CATALOGUE),
    "min_ms",
    "max_ms",
    *(f"server_{name}" for name in SERVER),
    "stable",
    "sla",
    "baseline",
    "change",
    "extra_info",
)


def _cell(value: Any) -> Any:
    return "" if value is None else value


def row(record: MeasurementRecord) -> dict[str, Any]:
    """One measurement as a row of :data:`HEADER`."""
    result = record.result
    workload = result.get("workload") or {}
    latency = result.get("latency_ms") or {}
    server = result.get("server") or {}
    change = ""
    if was_compared(record):
        c = headline(record)
        if c is not None and c.change_pct is not None:
            change = f"{SHORT_METRIC.get(c.metric, c.metric)} {c.change_pct:+.2f}%"
    values: dict[str, Any] = {
        "test": record.test,
        "index": record.index,
        "label": record.label,
        "outcome": record.outcome,
        "model": model_name(record),
        **{k: workload.get(k) for k in WORKLOAD},
        "requests": result.get("requests"),
        "errors": result.get("errors"),
        **{m.name: m.read(result) for m in metrics.CATALOGUE},
        "min_ms": latency.get("min"),
        "max_ms": latency.get("max"),
        **{f"server_{name}": server.get(name) for name in SERVER},
        "stable": result.get("stable"),
        "sla": record.sla_verdict,
        "baseline": verdict_of(record) if was_compared(record) else "",
        "change": change,
        "extra_info": json.dumps(record.extra_info, sort_keys=True) if record.extra_info else "",
    }
    return {k: _cell(values[k]) for k in HEADER}


def render_csv(records: Sequence[MeasurementRecord]) -> str:
    """The CSV text of ``records``: the header row, then one row per measurement."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=HEADER, lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow(row(record))
    return out.getvalue()


def write_report(
    records: Sequence[MeasurementRecord], destination: Path, context: ReportContext
) -> list[Path]:
    """The registry's writer: the CSV of ``records`` at ``destination`` (atomically)."""
    return [atomic_write_text(destination, render_csv(records))]
