"""github-action-benchmark's input (``--triton-perf-benchmark-json=DIR``), so that a team
charts its models' history on its own GitHub Pages with an action it already uses.

The action (``benchmark-action/github-action-benchmark``) reads one file per step, and the
step's ``tool`` says which way is better for every entry of that file:
``customSmallerIsBetter`` or ``customBiggerIsBetter``. A file is a JSON array of
``{"name", "unit", "value", "range", "extra"}`` (``range`` and ``extra`` are strings shown
in the chart's tooltip; the action refuses an empty array). So two files are written:

- ``DIR/customSmallerIsBetter.json``: the latencies (p50, p90, p95, p99, avg, in ms) and the
  memory figures (MB) where measured;
- ``DIR/customBiggerIsBetter.json``: throughput and capacity (inferences/s).

Directions, units and names come from the metric catalogue (error rates are left out: a
chart of zeros). ``name`` is ``<test id> [<measurement>] <figure>``, one chart each;
``range`` is the figure's 95% interval over the measurement's windows; ``extra`` carries the
SLA and baseline verdicts and the test's ``triton_perf.extra_info``. In a workflow::

    - uses: benchmark-action/github-action-benchmark@v1
      with:
        tool: customSmallerIsBetter
        output-file-path: perf/benchmark/customSmallerIsBetter.json
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pytest_triton_perf import metrics
from pytest_triton_perf.files import atomic_write_text
from pytest_triton_perf.measure.stats import median_ci
from pytest_triton_perf.report.context import ReportContext
from pytest_triton_perf.report.text import extra_text, num, verdict_cell
from pytest_triton_perf.verdicts import MeasurementRecord

SMALLER = "customSmallerIsBetter"
BIGGER = "customBiggerIsBetter"
#: The figures charted: every catalogue metric but the 0-1 rates.
CHARTED = tuple(m for m in metrics.CATALOGUE if not m.fraction)


def _range(record: MeasurementRecord, metric: metrics.Metric) -> str | None:
    """``95% CI 19.8-20.4`` over the windows, for figures that windows carry."""
    if not metric.per_window:
        return None
    values = [
        v for w in record.result.get("windows") or [] if (v := num(metric.read(w))) is not None
    ]
    ci = median_ci(values) if values else None
    return f"95% CI {ci[0]:.4g}-{ci[1]:.4g}" if ci else None


def _extra(record: MeasurementRecord) -> str:
    parts = [f"SLA: {record.sla_verdict}", f"baseline: {verdict_cell(record)}"]
    if record.extra_info:
        parts.append(f"extra_info: {extra_text(record.extra_info)}")
    return "\n".join(parts)


def entries(records: Sequence[MeasurementRecord]) -> dict[str, list[dict[str, Any]]]:
    """The entries of both files, by tool name."""
    out: dict[str, list[dict[str, Any]]] = {SMALLER: [], BIGGER: []}
    seen: Counter[tuple[str, str]] = Counter()
    for r in records:
        seen[(r.test, r.label)] += 1
        # The same workload measured twice in one test: the second chart is "#2".
        n = seen[(r.test, r.label)]
        name = f"{r.test} [{r.label}{f' #{n}' if n > 1 else ''}]"
        for m in CHARTED:
            value = num(m.read(r.result))
            if value is None:
                continue
            entry: dict[str, Any] = {"name": f"{name} {m.short}", "unit": m.unit, "value": value}
            spread = _range(r, m)
            if spread:
                entry["range"] = spread
            entry["extra"] = _extra(r)
            out[SMALLER if m.higher_is_worse else BIGGER].append(entry)
    return out


def write_report(
    records: Sequence[MeasurementRecord], destination: Path, context: ReportContext
) -> list[Path]:
    """The registry's writer: the two files in the directory ``destination``."""
    written = []
    for tool, items in entries(records).items():
        if items:  # the action refuses a file without entries
            text = json.dumps(items, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
            written.append(atomic_write_text(Path(destination) / f"{tool}.json", text))
    return written
