"""Formatting shared by the text reports (terminal, Markdown, JUnit messages, the CLI).

One place decides how a figure, a verdict and a one-line reason read, so the terminal, the
Markdown summary and the JUnit file never disagree about the same measurement.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pytest_triton_perf import metrics
from pytest_triton_perf.measure.host import describe as describe_load
from pytest_triton_perf.measure.result import sequence_text
from pytest_triton_perf.numbers import fmt as fmt
from pytest_triton_perf.numbers import fmt_interval as fmt_interval
from pytest_triton_perf.numbers import fmt_mb as fmt_mb
from pytest_triton_perf.numbers import fmt_p as fmt_p
from pytest_triton_perf.numbers import fmt_pct as fmt_pct
from pytest_triton_perf.numbers import num as num
from pytest_triton_perf.sla import BOUNDS
from pytest_triton_perf.verdicts import (
    IMPROVEMENT,
    INCONCLUSIVE,
    NO_BASELINE,
    NOT_COMPARED,
    REGRESSION,
    VERDICTS,
    Comparison,
    MeasurementRecord,
    SlaRecord,
)

# The number formatters live in ``numbers`` (one formatter for the failure screens and the
# reports); the writers and the CLI import them from here too: the ``as`` imports re-export.

#: Short names of metrics, as table cells show them (from the metric catalogue).
SHORT_METRIC = {m.name: m.short for m in metrics.CATALOGUE}

#: Unit of each figure, for one-line reasons (from the metric catalogue).
UNITS = {m.name: m.unit for m in metrics.CATALOGUE}


def with_unit(value: Any, metric: str) -> str:
    """A figure followed by its unit, e.g. ``12.30 ms``; rates (error rate) in percent."""
    meta = metrics.BY_NAME.get(metric)
    if meta is not None and meta.fraction:
        v = num(value)
        return "-" if v is None else f"{100 * v:.3g}%"
    unit = UNITS.get(metric, "")
    text = fmt(value)
    return f"{text} {unit}" if unit and text != "-" else text


def summary_figures(record: MeasurementRecord) -> dict[str, float | None]:
    """The headline figures of a record's result (``PerfResult.summary()`` names)."""
    return {m.name: num(m.read(record.result)) for m in metrics.CATALOGUE}


def model_name(record: MeasurementRecord) -> str:
    """``model[:version]`` of the measurement."""
    result = record.result
    version = result.get("version")
    return f"{result.get('model', '?')}" + (f":{version}" if version else "")


def workload_text(record: MeasurementRecord) -> str:
    """The workload as ``Workload.describe()`` writes it, rebuilt from the stored dict."""
    w = record.result.get("workload") or {}
    if w.get("arrival", "closed") == "closed":
        load = f"conc={w.get('concurrency')}"
    else:
        rate = num(w.get("request_rate"))
        load = f"rate={rate:g}/s {w.get('arrival')}" if rate is not None else "rate=?"
    text = f"{load} batch={w.get('batch_size', 1)} {w.get('protocol', '?')}"
    length = w.get("sequence_length")
    if isinstance(length, int):
        text += " " + sequence_text(length, num(w.get("sequence_length_variation")))
    if w.get("shared_memory"):
        text += f" shm={w['shared_memory']}"
    together = record.result.get("together_with") or []
    if together:  # co-location: the others measured in the same windows
        text += f" with {'+'.join(map(str, together))}"
    if record.result.get("footprint"):
        text = f"footprint (under load: {text})"
    return text


def extra_text(extra_info: Mapping[str, Any]) -> str:
    """A test's ``triton_perf.extra_info`` in one line: ``dataset=val2017, shards=4``
    (strings as they are, other values as JSON)."""
    return ", ".join(
        f"{k}={v if isinstance(v, str) else json.dumps(v, sort_keys=True)}"
        for k, v in extra_info.items()
    )


def extra_infos(records: Iterable[MeasurementRecord]) -> list[tuple[str, str]]:
    """(test id, :func:`extra_text`) of each test with ``triton_perf.extra_info``, once per
    test (every measurement of a test carries the same)."""
    found: dict[str, str] = {}
    for r in records:
        if r.extra_info and r.test not in found:
            found[r.test] = extra_text(r.extra_info)
    return list(found.items())


def was_compared(record: MeasurementRecord) -> bool:
    """Whether a baseline comparison was asked for this measurement.

    A record with no comparisons and an empty ``baseline`` dict (verdict "not compared") was
    measured without ``--triton-perf-compare`` / ``--triton-perf-baseline-ref``: reports show
    ``-`` for it rather than "no baseline", which would nag runs that never asked for gating.
    """
    return record.verdict != NOT_COMPARED


def headline(record: MeasurementRecord) -> Comparison | None:
    """The comparison that explains the record's verdict: among the metrics with that
    verdict, the most significant (smallest p-value), then the largest change. Among
    inconclusive ones, a shift history suspects (seen by this session only) comes first:
    it says what the next session will confirm, where a metric whose windows were too
    noisy to decide has a p-value that means nothing."""
    verdict = record.verdict
    same = [c for c in record.comparisons if c.verdict == verdict]
    if not same:
        return None

    def key(c: Comparison) -> tuple[int, float, float]:
        p = num(c.p_value)
        change = num(c.change_pct)
        suspected = verdict == INCONCLUSIVE and (c.note or "").startswith("suspected ")
        return (
            0 if suspected else 1,
            1.0 if p is None else p,
            -abs(change) if change is not None else 0.0,
        )

    return min(same, key=key)


def verdict_cell(record: MeasurementRecord) -> str:
    """Baseline verdict with the change of its headline metric: ``regression p99 +23.4%``."""
    if not was_compared(record):
        return "-"
    verdict = record.verdict
    c = headline(record)
    if c is None or num(c.change_pct) is None:
        return verdict
    return f"{verdict} {SHORT_METRIC.get(c.metric, c.metric)} {fmt_pct(c.change_pct)}"


def revision_text(revision: Any, short: bool = False) -> str:
    """A baseline's revision for people: ``commit 0123abcd, 2026-11-21T19:00:00Z, config
    1a2b3c``. The plugin stores a dict (``git_commit``, ``date``, ``config_hash``); a plain
    string is shown as it is. ``short``: the commit (or date) alone, for legends."""
    if not revision:
        return ""
    if not isinstance(revision, Mapping):
        return str(revision)[:12] if short else str(revision)
    commit = revision.get("git_commit")
    date = revision.get("date")
    config = revision.get("config_hash")
    if short:
        return str(commit)[:10] if commit else str(date or "")
    parts = []
    if commit:
        parts.append(f"commit {str(commit)[:12]}")
    if date:
        parts.append(str(date))
    if config:
        parts.append(f"config {str(config)[:12]}")
    return ", ".join(parts)


def verdict_of(record: MeasurementRecord) -> str:
    """The record's verdict as one of ``VERDICTS``, for counting: a status such as
    "no baseline for this hardware" counts as "no baseline"."""
    verdict = record.verdict
    if verdict in VERDICTS:
        return verdict
    return NO_BASELINE if verdict.startswith(NO_BASELINE) else INCONCLUSIVE


def missing_baseline(record: MeasurementRecord) -> bool:
    """Whether a comparison was asked for and found no baseline (history: nothing stored
    for this key; A/B: no reference), whatever the status says beyond "no baseline"."""
    return was_compared(record) and verdict_of(record) == NO_BASELINE


def baseline_where(record: MeasurementRecord) -> str:
    """Where the baseline came from: ``history: FILE @ REV`` or ``ab: reference``."""
    b = record.baseline
    if not b:
        return ""
    mode = str(b.get("mode") or "?")
    parts = [{"ab": "A/B reference", "history": "history"}.get(mode, mode)]
    if b.get("file"):
        parts.append(str(b["file"]))
    if b.get("revision"):
        parts.append(f"@ {revision_text(b['revision'])}")
    return " ".join(parts)


def fmt_mde(mde_pct: Any) -> str:
    """A minimum detectable effect: ``3.8%``, ``11%``; ``-`` when none was derived and
    ``none`` when the comparison could see no change at all (infinite)."""
    v = num(mde_pct)
    if v is None:
        return "none" if isinstance(mde_pct, float) and math.isinf(mde_pct) else "-"
    return f"{v:.1f}%" if v < 10 else f"{v:.0f}%"


def could_see(comparisons: Iterable[Comparison]) -> str:
    """What the comparisons could have seen: ``would have flagged >= 3.8% on p50, 7.2% on
    p99``; '' when none has a minimum detectable effect."""
    parts = [
        f"{fmt_mde(c.mde_pct)} on {SHORT_METRIC.get(c.metric, c.metric)}"
        for c in comparisons
        if c.mde_pct is not None
    ]
    return f"would have flagged >= {', '.join(parts)}" if parts else ""


def host_load(record: MeasurementRecord) -> str:
    """How busy the machine was during the measurement: ``load 3.2, steal 0%`` ('' unknown),
    and for a paired A/B comparison how long it took to decide:
    ``paired A/B: 14 pairs in 21 s, decided``."""
    load = record.environment.get("host_load")
    text = describe_load(load) if isinstance(load, Mapping) else ""
    design = (record.baseline or {}).get("design")
    if isinstance(design, Mapping) and design.get("method") == "paired":
        stopped = {
            "decided": "decided",
            "regression": "stopped at a regression",
            "budget": "budget spent",
            "fixed": "fixed length",
        }.get(str(design.get("stopped")), str(design.get("stopped")))
        confirmed = ", confirmed with fresh instances" if design.get("confirmed") else ""
        pace = f"paired A/B: {design.get('pairs')} pairs in {design.get('elapsed_s', 0):.0f} s"
        text = ", ".join(x for x in (f"{pace}, {stopped}{confirmed}", text) if x)
    return text


def comparison_reason(record: MeasurementRecord, c: Comparison, with_note: bool = True) -> str:
    """One line: ``p99_ms +23.4%: 12.30 ms [..] -> 15.18 ms [..], p=0.0012, could see >= 3.8%
    (history FILE)``."""
    text = (
        f"{c.metric} {fmt_pct(c.change_pct)}: {with_unit(c.baseline, c.metric)} "
        f"{fmt_interval(c.baseline_ci)} -> {with_unit(c.current, c.metric)} "
        f"{fmt_interval(c.current_ci)}, p={fmt_p(c.p_value)}"
    )
    if c.mde_pct is not None:
        text += f", could see >= {fmt_mde(c.mde_pct)}"
    where = baseline_where(record) or {"ab": "A/B reference"}.get(c.mode, c.mode)
    text += f" ({where})"
    if c.note and with_note:
        text += f"; {c.note}"
    return text


def sla_reason(s: SlaRecord) -> str:
    """One line: ``p99_ms 21.63 ms > bound 5.00 ms, 95% interval [20.1, 23.4]``."""
    bound = BOUNDS.get(s.key)
    metric = bound.metric if bound else s.key
    if s.value is None:
        return f"{s.key}: no value ({s.note or 'unavailable'}), bound {with_unit(s.bound, metric)}"
    upper = bound.upper if bound else True
    # The operator reads as the verdict: "21.6 ms > bound 5 ms" is the breach itself.
    op = {(True, True): "<=", (True, False): ">=", (False, True): ">", (False, False): "<"}[
        (s.passed, upper)
    ]
    text = f"{s.key} {with_unit(s.value, metric)} {op} bound {with_unit(s.bound, metric)}"
    if s.interval:
        text += f", 95% interval {fmt_interval(s.interval)}"
    if s.marginal:
        text += " (marginal: the interval straddles the bound)"
    if s.note:
        text += f"; {s.note}"
    return text


def verdict_counts(records: Iterable[MeasurementRecord]) -> Counter[str]:
    """Records per baseline verdict; records that were not compared are not counted."""
    return Counter(verdict_of(r) for r in records if was_compared(r))


def sla_counts(records: Iterable[MeasurementRecord]) -> tuple[int, int]:
    """(SLA checks breached, SLA checks marginal) over all records."""
    breached = marginal = 0
    for r in records:
        for s in r.sla:
            breached += not s.passed
            marginal += s.marginal
    return breached, marginal


def counts_text(records: Sequence[MeasurementRecord]) -> str:
    """``12 measurements: 10 pass, 1 regression, ...; SLA: 1 breach, 1 marginal``."""
    n = len(records)
    parts = [f"{n} measurement{'s' if n != 1 else ''}"]
    counts = verdict_counts(records)
    if counts:
        parts[0] += ": " + ", ".join(
            f"{counts.get(v, 0)} {v}" for v in VERDICTS if v != NOT_COMPARED
        )
        not_compared = n - sum(counts.values())
        if not_compared:
            parts[0] += f", {not_compared} {NOT_COMPARED}"
    breached, marginal = sla_counts(records)
    sla = f"SLA: {breached} breach{'es' if breached != 1 else ''}"
    if marginal:
        sla += f", {marginal} marginal"
    return f"{parts[0]}; {sla}"


def needs_attention(record: MeasurementRecord) -> bool:
    """A row worth showing at ``-q``: SLA not clean, or a verdict other than pass/none."""
    if record.sla_verdict not in ("pass", "none"):
        return True
    return was_compared(record) and record.verdict in (REGRESSION, IMPROVEMENT, INCONCLUSIVE)


def align(rows: Sequence[Sequence[str]], numeric: Iterable[int] = ()) -> list[str]:
    """Rows of cells as aligned text lines; the ``numeric`` columns right-aligned."""
    right = set(numeric)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for row in rows:
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
    return out


#: Columns of a pipeline's per-step table: server milliseconds per request of the step
#: (queue, compute input / infer / output), then the step's share of one pipeline request.
PIPELINE_HEADER = [
    "step",
    "requests",
    "per request",
    "queue ms",
    "input ms",
    "infer ms",
    "output ms",
    "share ms",
]


def pipeline_of(record: MeasurementRecord) -> Mapping[str, Any] | None:
    """The measurement's pipeline (``PerfResult.pipeline`` as a dict), None for a model that
    is neither an ensemble nor a BLS model."""
    doc = record.result.get("pipeline")
    return doc if isinstance(doc, Mapping) and doc.get("steps") else None


def pipeline_title(pipeline: Mapping[str, Any]) -> str:
    """``ensemble of 2 steps (from its configuration)``, ``BLS model calling 1 model
    (declared)``, ``... (inferred from traffic)``."""
    steps = pipeline.get("steps") or []
    n = len(steps)
    source = {
        "config": "from its configuration",
        "declared": "declared with composing_models",
        "traffic": "inferred from traffic",
    }.get(str(pipeline.get("source")), str(pipeline.get("source")))
    if pipeline.get("kind") == "ensemble":
        what = f"ensemble of {n} step{'s' if n != 1 else ''}"
    else:
        what = f"BLS model calling {n} model{'s' if n != 1 else ''}"
    return f"{what} ({source})"


def pipeline_rows(pipeline: Mapping[str, Any]) -> list[list[str]]:
    """One row per step, cells as :data:`PIPELINE_HEADER` names them."""
    rows = []
    for step in pipeline.get("steps") or []:
        server = step.get("server") or {}
        rows.append(
            [
                str(step.get("model")),
                str(server.get("requests", 0) + server.get("failures", 0)),
                fmt(step.get("calls_per_request")),
                fmt(server.get("queue_ms")),
                fmt(server.get("compute_input_ms")),
                fmt(server.get("compute_infer_ms")),
                fmt(server.get("compute_output_ms")),
                fmt(step.get("share_ms")),
            ]
        )
    return rows
