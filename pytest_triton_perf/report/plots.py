"""PNG plots (``--triton-perf-plots=DIR``): latency distributions and latency-throughput curves.

matplotlib is an optional extra (``pip install 'pytest-triton-perf[plots]'``), imported only
when plots are asked for, and used through ``Figure`` and the Agg canvas directly: pyplot's
global state and backend selection have no place in a test run (no display, maybe threads).

- ``latency-<test>-<n>.png``, one per measurement: the latency distribution (density over a
  log axis, and the cumulative share) of the current run against its baseline: the stored
  run's histogram in history mode, the reference's in A/B mode, the current run alone
  (and titled so) when there is none.
- ``curve-<test>-<model>-<protocol>-b<batch>.png``, one per test, model, protocol and batch
  size measured at several concurrency levels (or request rates): p50 and p99 latency against
  throughput, each point labelled with its load, the baseline's curve dashed when known.
- ``capacity-<test>-<n>.png``, one per capacity search: each bounded latency of the steps
  against throughput (steps in load order, each labelled with its load, those that broke a
  bound crossed), every bound a horizontal dashed line, the capacity point marked and
  labelled, the knee a dotted vertical line.
- ``stream-<test>-<n>.png``, one per measurement of a streaming (decoupled) model: the
  distributions of its time to first response (TTFT) and of the gaps between consecutive
  responses (ITL), density over a log axis and cumulative share, against the baseline's
  (stored run or A/B reference) when it has them, p50 and p99 marked.
- ``search-<test>-<n>.png``, one per configuration search: every candidate measured on
  throughput (x) against p99 (y), the SLA's p99 bound (and minimum throughput) drawn, the
  best and the committed configuration marked (Model Analyzer's main chart); and
  ``search-memory-<test>-<n>.png``, GPU memory (x) against p99, when any candidate has a
  GPU memory figure.
- ``colocation-<test>-<n>.png``, one per group of models measured together with their
  interference rounds: each model's p99 and throughput alone and together, the together bar
  with the 95% interval of the change, the change written above it.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_triton_perf.errors import PlotError
from pytest_triton_perf.report.analysis import (
    bound_text,
    bounded_latencies,
    capacity_of,
    group_of,
    load_text,
    ratio_text,
    search_of,
    short_name,
)
from pytest_triton_perf.report.context import ReportContext
from pytest_triton_perf.report.text import fmt, num, revision_text, summary_figures
from pytest_triton_perf.sla import BOUNDS
from pytest_triton_perf.verdicts import MeasurementRecord

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

CURRENT_COLOR = "#d95f02"  # orange: the run under test
BASELINE_COLOR = "#1b6ca8"  # blue: what it is compared with
P99_COLOR = "#7570b3"
#: One colour per latency figure of a capacity curve (p50 and p99 as in the sweep curves).
LATENCY_COLORS = {
    "p50_ms": CURRENT_COLOR,
    "p90_ms": "#1b9e77",
    "p95_ms": "#e6ab02",
    "p99_ms": P99_COLOR,
    "avg_ms": "#666666",
}
BREACH_COLOR = "#d62728"
#: Candidates of a configuration search by status: colour and marker.
STATUS_STYLE: dict[str | None, tuple[str, str]] = {
    "finalist": ("#1b6ca8", "o"),
    "pruned": ("#999999", "o"),
    "infeasible": (BREACH_COLOR, "x"),
}


def _figure(width: float, height: float) -> Figure:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotError(
            "--triton-perf-plots needs matplotlib, which is not installed: "
            "pip install 'pytest-triton-perf[plots]'"
        ) from None
    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)  # the Agg canvas, attached to this figure only: no global backend
    return fig


def _safe(text: str, limit: int = 80) -> str:
    """A file-name fragment: letters, digits, ``.``, ``_``, ``-``; ``_`` for the rest."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-") or "x"
    return safe[:limit]


def _unique_names(keys: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Map each raw key to its file name; names that collide after sanitizing get a short
    hash of the raw key, so the result depends only on the keys, never on their order."""
    by_name: dict[str, set[str]] = defaultdict(set)
    for raw, name in keys:
        by_name[name].add(raw)
    out = {}
    for raw, name in keys:
        if len(by_name[name]) > 1:
            name = f"{name}-{hashlib.sha1(raw.encode()).hexdigest()[:8]}"
        out[raw] = name
    return out


def _hist(h: Mapping[str, Any] | None) -> tuple[list[float], list[float]] | None:
    """(edges, counts) of a stored histogram, or None when it is empty or malformed."""
    if not h:
        return None
    edges = [float(e) for e in h.get("edges_ms") or []]
    counts = [float(c) for c in h.get("counts") or []]
    if len(edges) < 2 or len(counts) != len(edges) - 1 or sum(counts) <= 0:
        return None
    return edges, counts


def _baseline_of(record: MeasurementRecord) -> tuple[tuple[list[float], list[float]], str] | None:
    """The histogram to compare with and its legend label."""
    b = record.baseline or {}
    stored = _hist(b.get("histogram"))
    mode = b.get("mode")
    if stored is not None:
        name = "A/B reference" if mode == "ab" else "baseline"
        if b.get("revision"):
            name += f" ({revision_text(b['revision'], short=True)})"
        return stored, name
    reference = b.get("reference") or {}
    ref = _hist(reference.get("histogram")) if isinstance(reference, Mapping) else None
    if ref is not None:
        return ref, "A/B reference"
    return None


def _hist_percentile(hist: tuple[list[float], list[float]], q: float) -> float:
    """Nearest-rank percentile estimated from a log-bucketed histogram: the bucket holding
    the rank, interpolated geometrically inside it (buckets are a few percent wide)."""
    edges, counts = hist
    rank = max(1.0, math.ceil(q / 100 * sum(counts)))
    seen = 0.0
    for lo, hi, c in zip(edges[:-1], edges[1:], counts, strict=True):
        if c and seen + c >= rank:
            return lo * (hi / lo) ** ((rank - seen) / c)
        seen += c
    return edges[-1]


def _baseline_percentiles(
    record: MeasurementRecord, hist: tuple[list[float], list[float]] | None
) -> tuple[dict[str, float], bool]:
    """Baseline p50/p99 pooled over its requests, as the current run's are, and whether they
    are estimates: exact from the A/B reference's result, else estimated from the baseline
    histogram. (The comparisons' baseline values are medians of per-window values, a
    different statistic; drawn beside pooled percentiles they would mislead.)"""
    b = record.baseline or {}
    reference = b.get("reference")
    sources = [reference.get("latency_ms") if isinstance(reference, Mapping) else None]
    sources.append(b.get("latency_ms"))
    for source in sources:
        if isinstance(source, Mapping):
            p50, p99 = num(source.get("p50")), num(source.get("p99"))
            if p50 is not None and p99 is not None:
                return {"p50_ms": p50, "p99_ms": p99}, False
    if hist is not None:
        return {"p50_ms": _hist_percentile(hist, 50), "p99_ms": _hist_percentile(hist, 99)}, True
    return {}, False


def _baseline_of_hist(record: MeasurementRecord) -> tuple[list[float], list[float]] | None:
    base = _baseline_of(record)
    return base[0] if base else None


def _baseline_point(record: MeasurementRecord) -> tuple[float, float, float] | None:
    """(throughput, p50, p99) of a measurement's baseline, or None when unknown."""
    p, _ = _baseline_percentiles(record, _baseline_of_hist(record))
    reference = (record.baseline or {}).get("reference")
    throughput = num(reference.get("throughput")) if isinstance(reference, Mapping) else None
    if throughput is None:
        c = record.comparison("throughput")
        throughput = num(c.baseline) if c is not None else None
    if throughput is None or "p50_ms" not in p or "p99_ms" not in p:
        return None
    return throughput, p["p50_ms"], p["p99_ms"]


def _draw_distribution(
    dens: Axes,
    cdf: Axes,
    hist: tuple[list[float], list[float]],
    color: str,
    label: str,
    filled: bool,
) -> None:
    edges, counts = hist
    total = sum(counts)
    # Density per decade: buckets are log-spaced and differ between runs, so raw counts
    # of two histograms are not comparable; shares per unit of log10(latency) are.
    density = [
        c / total / max(math.log10(hi) - math.log10(lo), 1e-12)
        for c, lo, hi in zip(counts, edges[:-1], edges[1:], strict=True)
    ]
    dens.stairs(density, edges, color=color, linewidth=1.8, label=label)
    if filled:
        dens.stairs(density, edges, color=color, alpha=0.18, fill=True)
    cum = [0.0]
    for c in counts:
        cum.append(cum[-1] + c / total)
    cdf.step(edges, cum, where="post", color=color, linewidth=1.8, label=label)


def _log_ticks(
    ax: Axes, *hists: Mapping[str, Any] | tuple[list[float], list[float]] | None
) -> None:
    """Readable ticks on a log latency axis: plain numbers (``20``, ``0.5``) instead of
    ``2x10^1``, denser when the data spans a decade or less (the usual case)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    lo, hi = math.inf, 0.0
    for h in hists:
        parsed = _hist(h) if isinstance(h, Mapping) else h
        if parsed:
            lo, hi = min(lo, parsed[0][0]), max(hi, parsed[0][-1])
    decades = math.log10(hi / lo) if 0 < lo < hi else 3.0
    if decades <= 1:
        subs: tuple[float, ...] = (1, 1.5, 2, 3, 4, 5, 7)
    elif decades <= 2.5:
        subs = (1, 2, 5)
    else:
        subs = (1,)
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _latency_plot(record: MeasurementRecord, path: Path) -> Path | None:
    current = _hist(record.histogram)
    if current is None:
        return None
    fig = _figure(11, 4.4)
    dens, cdf = fig.subplots(1, 2)
    base = _baseline_of(record)
    if base is not None:
        _draw_distribution(dens, cdf, base[0], BASELINE_COLOR, base[1], filled=True)
    _draw_distribution(dens, cdf, current, CURRENT_COLOR, "current", filled=base is None)

    figures = summary_figures(record)
    # Without a baseline histogram the baseline's percentiles (from the comparisons) are
    # still worth drawing: they show where the distribution used to be.
    base_p, estimated = _baseline_percentiles(record, base[0] if base else None)
    # Percentile lines on both panels; their values go into the legend rather than onto the
    # plot, where labels would cross the curves.
    for metric, style in (("p50_ms", "--"), ("p99_ms", ":")):
        for value, color in (
            (base_p.get(metric), BASELINE_COLOR),
            (figures[metric], CURRENT_COLOR),
        ):
            if value is not None:
                for ax in (dens, cdf):
                    ax.axvline(value, color=color, linestyle=style, linewidth=1.2)

    def legend_label(name: str, p: Mapping[str, float | None], approx: bool = False) -> str:
        if p.get("p50_ms") is None or p.get("p99_ms") is None:
            return name
        about = "≈" if approx else ""
        return f"{name}: p50 {about}{fmt(p['p50_ms'])} ms, p99 {about}{fmt(p['p99_ms'])} ms"

    for ax in (dens, cdf):
        ax.set_xscale("log")
        _log_ticks(ax, record.histogram, base[0] if base else None)
        ax.set_xlabel("latency (ms, log scale)")
        ax.grid(True, which="major", alpha=0.3)
    dens.set_ylabel("share of requests per decade")
    dens.set_title("distribution (dashed: p50, dotted: p99)", fontsize=10)
    cdf.set_ylabel("share of requests at or below")
    cdf.set_ylim(0, 1.03)
    cdf.set_title("cumulative", fontsize=10)
    handles, labels = cdf.get_legend_handles_labels()
    names = {"current": legend_label("current", figures)}
    if base is not None:
        names[base[1]] = legend_label(base[1], base_p, estimated)
    elif base_p:
        (line,) = cdf.plot([], [], color=BASELINE_COLOR, linestyle="--")
        handles.append(line)
        labels.append(legend_label("baseline", base_p))
    cdf.legend(handles, [names.get(label, label) for label in labels], loc="best", fontsize=8.5)

    if base is not None:
        what = f"current vs {base[1]}"
    elif base_p:
        what = "current run; baseline percentiles only (no baseline histogram)"
    else:
        what = "current run only: no baseline histogram"
    verdict = record.verdict
    fig.suptitle(
        f"{record.test}\n{record.label}: {what}  [SLA {record.sla_verdict}, {verdict}]",
        fontsize=11,
    )
    fig.savefig(path, format="png")
    return path


#: The distributions of a streaming plot: histogram key, axis label, result figure.
STREAM_PANELS = (
    ("ttft_ms", "time to first response (ms, log scale)", "TTFT"),
    ("itl_ms", "gap between consecutive responses (ms, log scale)", "ITL"),
)


def _stream_baseline(record: MeasurementRecord) -> tuple[dict[str, Any], str] | None:
    """The baseline's stream histograms (stored run, or A/B reference) and their label."""
    b = record.baseline or {}
    hists = b.get("stream_histograms")
    if isinstance(hists, Mapping) and any(_hist(h) for h in hists.values()):
        name = "A/B reference" if b.get("mode") == "ab" else "baseline"
        if b.get("revision"):
            name += f" ({revision_text(b['revision'], short=True)})"
        return dict(hists), name
    return None


def _stream_plot(record: MeasurementRecord, path: Path) -> Path | None:
    hists = record.stream_histograms or {}
    if not any(_hist(hists.get(key)) for key, _, _ in STREAM_PANELS):
        return None
    fig = _figure(11, 7.6)
    axes = fig.subplots(2, 2)
    base = _stream_baseline(record)
    for (key, label, short), (dens, cdf) in zip(STREAM_PANELS, axes, strict=True):
        current = _hist(hists.get(key))
        theirs = _hist(base[0].get(key)) if base else None
        if theirs is not None and base is not None:
            _draw_distribution(dens, cdf, theirs, BASELINE_COLOR, base[1], filled=True)
        if current is not None:
            _draw_distribution(dens, cdf, current, CURRENT_COLOR, "current", theirs is None)
        stats = record.result.get(key)
        for q, style in (("p50", "--"), ("p99", ":")):
            value = num(stats.get(q)) if isinstance(stats, Mapping) else None
            if value is not None:
                for ax in (dens, cdf):
                    ax.axvline(value, color=CURRENT_COLOR, linestyle=style, linewidth=1.2)
        for ax in (dens, cdf):
            ax.set_xscale("log")
            _log_ticks(ax, hists.get(key), theirs)
            ax.set_xlabel(label)
            ax.grid(True, which="major", alpha=0.3)
        p50 = fmt(stats.get("p50")) if isinstance(stats, Mapping) else "-"
        p99 = fmt(stats.get("p99")) if isinstance(stats, Mapping) else "-"
        dens.set_ylabel("share per decade")
        dens.set_title(f"{short}: p50 {p50} ms (dashed), p99 {p99} ms (dotted)", fontsize=10)
        cdf.set_ylabel("share at or below")
        cdf.set_ylim(0, 1.03)
        cdf.set_title(f"{short}, cumulative", fontsize=10)
        cdf.legend(loc="best", fontsize=8.5)
    what = f"current vs {base[1]}" if base else "current run only: no baseline histograms"
    fig.suptitle(
        f"{record.test}\n{record.label}: TTFT and inter-response latency, {what}  "
        f"[SLA {record.sla_verdict}, {record.verdict}]",
        fontsize=11,
    )
    fig.savefig(path, format="png")
    return path


def _load_of(record: MeasurementRecord) -> float | None:
    w = record.result.get("workload") or {}
    return num(
        w.get("concurrency") if w.get("arrival", "closed") == "closed" else w.get("request_rate")
    )


def _curve_groups(
    records: Sequence[MeasurementRecord],
) -> dict[tuple[str, str, str, int, str], list[MeasurementRecord]]:
    groups: dict[tuple[str, str, str, int, str], list[MeasurementRecord]] = defaultdict(list)
    for r in records:
        w = r.result.get("workload") or {}
        model = str(r.result.get("model", "?"))
        if r.result.get("version"):
            model += f":{r.result['version']}"
        key = (
            r.test,
            model,
            str(w.get("protocol", "?")),
            int(w.get("batch_size") or 1),
            str(w.get("arrival", "closed")),
        )
        if _load_of(r) is not None:
            groups[key].append(r)
    # A curve needs at least two distinct load levels.
    return {k: v for k, v in groups.items() if len({_load_of(r) for r in v}) >= 2}


def _curve_plot(
    key: tuple[str, str, str, int, str], records: list[MeasurementRecord], path: Path
) -> Path | None:
    test, model, protocol, batch, arrival = key
    points = []
    for r in sorted(records, key=lambda r: (_load_of(r) or 0, r.index)):
        f = summary_figures(r)
        if f["throughput"] is None or f["p50_ms"] is None or f["p99_ms"] is None:
            continue
        points.append((r, _load_of(r), f["throughput"], f["p50_ms"], f["p99_ms"]))
    if len(points) < 2:
        return None
    fig = _figure(8, 5)
    ax = fig.subplots()
    xs = [p[2] for p in points]
    ax.plot(xs, [p[3] for p in points], "o-", color=CURRENT_COLOR, label="p50 (current)")
    ax.plot(xs, [p[4] for p in points], "s-", color=P99_COLOR, label="p99 (current)")
    prefix = "c=" if arrival == "closed" else "rate="
    for _, load, x, _p50, p99 in points:
        ax.annotate(
            f"{prefix}{load:g}",
            (x, p99),
            xytext=(0, 7),
            textcoords="offset points",
            ha="center",
            fontsize=8,
        )

    # The baseline curve, when every point has one; pooled percentiles like the current
    # curve's (see _baseline_percentiles), never the comparisons' window medians.
    base: list[tuple[float, float, float]] = []
    for r, *_ in points:
        point = _baseline_point(r)
        if point is None:
            base = []
            break
        base.append(point)
    if base:
        estimated = any(_baseline_percentiles(r, _baseline_of_hist(r))[1] for r, *_ in points)
        about = " ≈" if estimated else ""
        bx = [b[0] for b in base]
        ax.plot(
            bx, [b[1] for b in base], "o--", color=BASELINE_COLOR, label=f"p50 (baseline{about})"
        )
        p99_label = f"p99 (baseline{about})"
        ax.plot(bx, [b[2] for b in base], "s--", color=BASELINE_COLOR, alpha=0.5, label=p99_label)

    ax.set_xlabel("throughput (inferences/s)")
    ax.set_ylabel("latency (ms)")
    ax.set_ylim(bottom=0)
    ax.margins(x=0.08, y=0.15)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=9)
    over = "concurrency" if arrival == "closed" else f"request rate ({arrival})"
    ax.set_title(
        f"{test}\n{model}  {protocol}  batch={batch}: latency vs throughput over {over}",
        fontsize=10,
    )
    fig.savefig(path, format="png")
    return path


def _xy(
    items: Sequence[Mapping[str, Any]], x_key: str, y_key: str
) -> tuple[list[float], list[float]]:
    """The (x, y) figures of the items that have both, as two lists."""
    xs, ys = [], []
    for item in items:
        x, y = num(item.get(x_key)), num(item.get(y_key))
        if x is not None and y is not None:
            xs.append(x)
            ys.append(y)
    return xs, ys


def _bound(bounds: Mapping[str, Any], key: str) -> float | None:
    return num(bounds.get(key))


def _sla_line(ax: Axes, key: str, value: float | None, color: str, vertical: bool = False) -> None:
    """An SLA bound across the plot, labelled as the marker writes it, with its unit."""
    if value is None:
        return
    meta = BOUNDS.get(key)
    unit = f" {meta.unit}" if meta is not None and meta.unit else ""
    line = ax.axvline if vertical else ax.axhline
    line(
        value,
        color=color,
        linestyle=":" if vertical else "--",
        linewidth=1.2,
        label=f"SLA {bound_text(key, value)}{unit}",
    )


def _latency_axis(ax: Axes, *values: float | None) -> None:
    """A latency axis from 0 with room above the highest point and bound: a bound line at
    the very edge would read as the frame."""
    top = max((v for v in values if v is not None), default=0.0)
    ax.set_ylim(0, top * 1.15 if top > 0 else 1.0)


def capacity_figure(test: str, cap: Mapping[str, Any]) -> Figure | None:
    """The latency-vs-throughput curve of a capacity search (None: no step has figures)."""
    over = cap.get("over", "concurrency")
    bounds = cap.get("bounds") or {}
    steps = [
        s
        for s in cap.get("steps") or []
        if isinstance(s, Mapping) and num(s.get("throughput")) is not None
    ]
    steps.sort(key=lambda s: num(s.get("load")) or 0.0)
    keys = [k for k in bounded_latencies(cap) if any(num(s.get(k)) is not None for s in steps)]
    if not keys:
        return None
    fig = _figure(8, 5)
    ax = fig.subplots()
    breached = [s for s in steps if s.get("breached") or s.get("passed") is False]
    for key in keys:
        color = LATENCY_COLORS.get(key, P99_COLOR)
        ax.plot(*_xy(steps, "throughput", key), "o-", color=color, label=key)
        _sla_line(ax, key, _bound(bounds, key), color)
    if breached:
        bx: list[float] = []
        by: list[float] = []
        for key in keys:
            kx, ky = _xy(breached, "throughput", key)
            bx += kx
            by += ky
        ax.plot(
            bx,
            by,
            "x",
            linestyle="none",
            color=BREACH_COLOR,
            markersize=9,
            markeredgewidth=2,
            label="breaks a bound",
        )
    # Each point's load, over the highest percentile drawn.
    top = next((k for k in reversed(keys) if k != "avg_ms"), keys[-1])
    for s in steps:
        px, py = num(s.get("throughput")), num(s.get(top))
        if px is not None and py is not None:
            ax.annotate(
                load_text(over, s.get("load"), short=True),
                (px, py),
                xytext=(0, 7),
                textcoords="offset points",
                ha="center",
                fontsize=8,
            )
    knee = num(cap.get("knee"))
    knee_x = next(
        (
            num(s.get("throughput"))
            for s in steps
            if knee is not None and num(s.get("load")) == knee
        ),
        None,
    )
    if knee_x is not None:
        ax.axvline(
            knee_x,
            color="#444444",
            linestyle=":",
            linewidth=1.2,
            label=f"knee ({load_text(over, knee, short=True)})",
        )
    capacity = num(cap.get("capacity"))
    at = [s for s in steps if num(s.get("load")) == num(cap.get("load"))]
    limited = str(cap.get("limited_by") or "")
    cy = num(at[-1].get(limited if limited in keys else top)) if at else None
    if capacity is not None and cy is not None:
        ax.plot(
            [capacity],
            [cy],
            "*",
            color="black",
            markersize=16,
            zorder=5,
            label=f"capacity {fmt(capacity, 1)} infer/s",
        )
        ax.annotate(
            f"capacity {fmt(capacity, 1)} infer/s\nat {load_text(over, cap.get('load'))}",
            (capacity, cy),
            xytext=(-14, -12),
            textcoords="offset points",
            ha="right",
            va="top",
            fontsize=9,
            fontweight="bold",
        )
    ax.set_xlabel("throughput (inferences/s)")
    ax.set_ylabel("latency (ms)")
    ax.margins(x=0.08)
    _latency_axis(
        ax,
        *(num(s.get(k)) for s in steps for k in keys),
        *(_bound(bounds, k) for k in keys),
    )
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize=9)
    where = "request rate" if over == "request_rate" else "concurrency"
    found = "no capacity within the bounds" if capacity is None else "capacity search"
    ax.set_title(
        f"{test}\n{cap.get('model') or '?'}: {found} over {where}, latency vs throughput",
        fontsize=10,
    )
    return fig


def _search_figure(
    test: str, search: Mapping[str, Any], x_key: str, x_label: str, x_bound: str
) -> Figure | None:
    """Every measured candidate on ``x_key`` against p99: by status, labelled with its short
    name, the best and the committed configuration marked, the SLA's bounds drawn. None when
    no candidate has both figures (failed candidates have neither)."""
    candidates = [
        c
        for c in search.get("candidates") or []
        if isinstance(c, Mapping)
        and num(c.get(x_key)) is not None
        and num(c.get("p99_ms")) is not None
    ]
    if not candidates:
        return None
    sla = search.get("sla") or {}
    fig = _figure(8, 5.5)
    ax = fig.subplots()
    styles = {**STATUS_STYLE, None: ("#bbbbbb", "o")}  # None: any other status
    for status, (color, marker) in styles.items():
        group = [
            c
            for c in candidates
            if c.get("status") == status or (status is None and c.get("status") not in STATUS_STYLE)
        ]
        if group:
            ax.plot(
                *_xy(group, x_key, "p99_ms"),
                marker,
                linestyle="none",
                color=color,
                markersize=7,
                label=f"{status or 'other'} ({len(group)})",
            )
    for c in candidates:
        ax.annotate(
            short_name(c.get("name")),
            (num(c.get(x_key)) or 0.0, num(c.get("p99_ms")) or 0.0),
            xytext=(5, 4),
            textcoords="offset points",
            fontsize=8,
        )
    best = next((c for c in candidates if c.get("name") == search.get("best")), None)
    if best is not None:
        ax.plot(
            *_xy([best], x_key, "p99_ms"),
            "*",
            color=CURRENT_COLOR,
            markersize=18,
            zorder=5,
            label=f"best: {best.get('name')}",
        )
    committed_name = search.get("committed")
    committed = next(
        (
            c
            for c in candidates
            if c.get("committed") or (committed_name and c.get("name") == committed_name)
        ),
        None,
    )
    if committed is not None:
        ax.plot(
            *_xy([committed], x_key, "p99_ms"),
            "D",
            markerfacecolor="none",
            markeredgecolor="black",
            markeredgewidth=1.6,
            markersize=13,
            zorder=6,
            label=f"committed: {committed.get('name')}",
        )
    p99_bound = _bound(sla, "p99_ms")
    _sla_line(ax, "p99_ms", p99_bound, BREACH_COLOR)
    _sla_line(ax, x_bound, _bound(sla, x_bound), BREACH_COLOR, vertical=True)
    ax.set_xlabel(x_label)
    ax.set_ylabel("p99 latency (ms)")
    ax.margins(x=0.1)
    _latency_axis(ax, p99_bound, *(num(c.get("p99_ms")) for c in candidates))
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8.5)
    ax.set_title(
        f"{test}\n{search.get('model') or '?'}: {len(candidates)} configurations measured, "
        f"objective {search.get('objective') or '?'} ({search.get('strategy') or '?'})",
        fontsize=10,
    )
    return fig


def search_figure(test: str, search: Mapping[str, Any]) -> Figure | None:
    """Model Analyzer's main chart: every candidate on throughput against p99 (None: no
    candidate was measured)."""
    return _search_figure(test, search, "throughput", "throughput (inferences/s)", "min_throughput")


def search_memory_figure(test: str, search: Mapping[str, Any]) -> Figure | None:
    """GPU memory against p99 of every candidate (None: no GPU memory was measured)."""
    return _search_figure(test, search, "gpu_memory_mb", "GPU memory (MB)", "max_gpu_memory_mb")


def group_figure(test: str, group: Mapping[str, Any]) -> Figure | None:
    """A co-location group's cost: per model, p99 and throughput alone (blue) and together
    (orange), the together bar with the 95% interval of its ratio to alone and the change
    written above it. None when the interference rounds did not run."""
    costs = group.get("interference") or {}
    models = [str(m) for m in group.get("models") or [] if m in costs]
    if not models:
        return None
    fig = _figure(4 + 2.2 * len(models), 4.8)
    axes = fig.subplots(1, 2)
    panels = (
        ("p99", "p99 latency (ms)", "alone_p99_ms", "together_p99_ms", "p99_ratio", "p99_interval"),
        (
            "throughput",
            "throughput (inferences/s)",
            "alone_throughput",
            "together_throughput",
            "throughput_ratio",
            "throughput_interval",
        ),
    )
    for ax, (_, label, alone_key, together_key, ratio_key, interval_key) in zip(
        axes, panels, strict=True
    ):
        top = 0.0
        for i, m in enumerate(models):
            c = costs[m] or {}
            alone, together = num(c.get(alone_key)), num(c.get(together_key))
            if alone is not None:
                ax.bar(i - 0.2, alone, 0.4, color=BASELINE_COLOR, label="alone" if i == 0 else None)
            if together is None:
                continue
            err = None
            interval = c.get(interval_key)
            if alone is not None and isinstance(interval, (list, tuple)) and len(interval) == 2:
                lo, hi = num(interval[0]), num(interval[1])
                if lo is not None and hi is not None:
                    err = [[max(0.0, together - alone * lo)], [max(0.0, alone * hi - together)]]
            peak = together + (err[1][0] if err else 0.0)
            top = max(top, peak, alone or 0.0)
            ax.bar(
                i + 0.2,
                together,
                0.4,
                color=CURRENT_COLOR,
                yerr=err,
                capsize=4,
                label="together" if i == 0 else None,
            )
            ax.annotate(
                ratio_text(c.get(ratio_key)),
                (i + 0.2, peak),
                xytext=(0, 6),
                textcoords="offset points",
                ha="center",
                fontsize=8,
            )
        ax.set_xticks(range(len(models)), models)
        if top > 0:
            ax.set_ylim(0, top * 1.3)  # room for the change labels and the legend
        ax.set_ylabel(label)
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(loc="best", fontsize=8.5)
    fig.suptitle(
        f"{test}\nco-location cost: {' + '.join(models)}, {group.get('rounds') or '?'} rounds "
        f"alone vs together (95% intervals)",
        fontsize=10,
    )
    return fig


def _analysis_plots(records: Sequence[MeasurementRecord], out: Path) -> list[Path]:
    """The capacity and search plots of ``records`` in ``out``."""
    figures: list[tuple[str, str, Figure]] = []
    for r in records:
        raw = f"{r.test}\0{r.index}"
        stem = f"{_safe(r.test)}-{r.index}"
        cap = capacity_of(r)
        if cap is not None:
            fig = capacity_figure(r.test, cap)
            if fig is not None:
                figures.append((f"capacity\0{raw}", f"capacity-{stem}", fig))
        group = group_of(r)
        if group is not None:
            fig = group_figure(r.test, group)
            if fig is not None:
                figures.append((f"colocation\0{raw}", f"colocation-{stem}", fig))
        search = search_of(r)
        if search is not None:
            for kind, make in (("search", search_figure), ("search-memory", search_memory_figure)):
                fig = make(r.test, search)
                if fig is not None:
                    figures.append((f"{kind}\0{raw}", f"{kind}-{stem}", fig))
    names = _unique_names([(raw, name) for raw, name, _ in figures])
    written = []
    for raw, _, fig in figures:
        path = out / f"{names[raw]}.png"
        fig.savefig(path, format="png")
        written.append(path)
    return written


def write_plots(
    directory: str | os.PathLike[str], records: Sequence[MeasurementRecord]
) -> list[Path]:
    """Write the PNG plots of ``records`` into ``directory``; returns the files written.

    Measurements without a latency histogram (no request succeeded) get no distribution plot.
    Raises :class:`PlotError` when matplotlib is not installed.
    """
    out = Path(directory)
    if not records:
        return []
    _figure(1, 1)  # fail early, before creating the directory, when matplotlib is missing
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    latency_keys = [(f"{r.test}\0{r.index}", f"latency-{_safe(r.test)}-{r.index}") for r in records]
    names = _unique_names(latency_keys)
    for r, (raw, _) in zip(records, latency_keys, strict=True):
        p = _latency_plot(r, out / f"{names[raw]}.png")
        if p is not None:
            written.append(p)

    stream_keys = [
        (f"{r.test}\0{r.index}", f"stream-{_safe(r.test)}-{r.index}")
        for r in records
        if r.stream_histograms
    ]
    names = _unique_names(stream_keys)
    for r, (raw, _) in zip([r for r in records if r.stream_histograms], stream_keys, strict=True):
        p = _stream_plot(r, out / f"{names[raw]}.png")
        if p is not None:
            written.append(p)

    groups = _curve_groups(records)
    curve_keys = [
        (
            "\0".join(map(str, key)),
            f"curve-{_safe(key[0])}-{_safe(key[1], 40)}-{key[2]}-b{key[3]}"
            + ("" if key[4] == "closed" else f"-{_safe(key[4])}"),
        )
        for key in groups
    ]
    names = _unique_names(curve_keys)
    for (key, group), (raw, _) in zip(groups.items(), curve_keys, strict=True):
        p = _curve_plot(key, group, out / f"{names[raw]}.png")
        if p is not None:
            written.append(p)
    written += _analysis_plots(records, out)
    return written


def write_report(
    records: Sequence[MeasurementRecord], destination: Path, context: ReportContext
) -> list[Path]:
    """The registry's writer: the plots of ``records`` in the directory ``destination``."""
    return write_plots(destination, records)
