"""Measurement rows: written as JUnit user properties, read back for the terminal summary.

``item.user_properties`` is the one channel that survives pytest-xdist's hop from worker to
controller and lands in pytest's own ``--junitxml``, so the summary is built from it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pytest_triton_perf.measure.result import PerfResult

PREFIX = "triton_perf"
FIGURES = (
    "p50_ms",
    "p90_ms",
    "p95_ms",
    "p99_ms",
    "avg_ms",
    "throughput",
    "gpu_memory_mb",
    "cpu_memory_mb",
    "error_rate",
)


def _key(index: int, name: str) -> str:
    return f"{PREFIX}.{index}.{name}"


def properties_for(index: int, result: PerfResult) -> list[tuple[str, object]]:
    """User properties describing measurement number ``index`` of a test."""
    props: list[tuple[str, object]] = [
        (_key(index, "model"), result.model + (f":{result.version}" if result.version else "")),
        (_key(index, "workload"), result.workload.describe()),
        (_key(index, "requests"), result.requests),
        (_key(index, "errors"), result.errors),
        (_key(index, "stable"), result.stable),
    ]
    for name, value in result.summary().items():
        props.append((_key(index, name), "unavailable" if value is None else round(value, 4)))
    return props


def sla_property(index: int, verdict: str) -> tuple[str, object]:
    """The SLA verdict of measurement ``index``: pass, FAIL or none."""
    return (_key(index, "sla"), verdict)


@dataclass(frozen=True)
class Row:
    """One measurement as the terminal summary shows it."""

    test: str
    model: str
    workload: str
    p50_ms: float | None
    p99_ms: float | None
    throughput: float | None
    gpu_memory_mb: float | None
    cpu_memory_mb: float | None
    errors: int
    sla: str


def _num(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def rows_from_properties(test: str, props: Iterable[tuple[str, object]]) -> list[Row]:
    """Rebuild the rows of one test from its user properties (other properties ignored)."""
    by_index: dict[int, dict[str, object]] = {}
    for name, value in props:
        parts = str(name).split(".", 2)
        if len(parts) != 3 or parts[0] != PREFIX or not parts[1].isdigit():
            continue
        by_index.setdefault(int(parts[1]), {})[parts[2]] = value
    rows = []
    for _, d in sorted(by_index.items()):
        rows.append(
            Row(
                test=test,
                model=str(d.get("model", "?")),
                workload=str(d.get("workload", "")),
                p50_ms=_num(d.get("p50_ms")),
                p99_ms=_num(d.get("p99_ms")),
                throughput=_num(d.get("throughput")),
                gpu_memory_mb=_num(d.get("gpu_memory_mb")),
                cpu_memory_mb=_num(d.get("cpu_memory_mb")),
                errors=int(_num(d.get("errors")) or 0),
                sla=str(d.get("sla", "none")),
            )
        )
    return rows


def _cell(value: float | None, fmt: str = "{:.2f}") -> str:
    return "-" if value is None else fmt.format(value)


def render_table(rows: Sequence[Row], *, verbose: bool = False) -> list[str]:
    """Aligned text lines, one per measurement; memory and test id columns when verbose."""
    header = ["test", "model", "workload", "p50 ms", "p99 ms", "infer/s", "errors", "SLA"]
    if verbose:
        header[6:6] = ["GPU MB", "CPU MB"]
    table = [header]
    for r in rows:
        cells = [
            r.test,
            r.model,
            r.workload,
            _cell(r.p50_ms),
            _cell(r.p99_ms),
            _cell(r.throughput, "{:.1f}"),
            str(r.errors),
            r.sla,
        ]
        if verbose:
            cells[6:6] = [_cell(r.gpu_memory_mb, "{:.0f}"), _cell(r.cpu_memory_mb, "{:.0f}")]
        table.append(cells)
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    numeric = {i for i, h in enumerate(header) if h.endswith(("ms", "/s", "MB", "errors"))}
    lines = []
    for row in table:
        cells = [
            c.rjust(w) if i in numeric else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=False))
        ]
        lines.append("  ".join(cells).rstrip())
    return lines
