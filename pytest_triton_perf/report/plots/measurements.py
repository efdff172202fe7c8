"""The plots of measurements: latency distributions against the baseline, streaming
figures (TTFT, ITL), and latency-throughput curves over load levels."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_triton_perf.report.plots.canvas import (
    BASELINE_COLOR,
    CURRENT_COLOR,
    P99_COLOR,
    new_figure,
)
from pytest_triton_perf.report.text import fmt, num, revision_text, summary_figures
from pytest_triton_perf.verdicts import MeasurementRecord

if TYPE_CHECKING:
    from matplotlib.axes import Axes


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


def latency_plot(record: MeasurementRecord, path: Path) -> Path | None:
    """A measurement's latency distribution against its baseline, written to ``path``
    (None: the measurement has no latency histogram)."""
    current = _hist(record.histogram)
    if current is None:
        return None
    fig = new_figure(11, 4.4)
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


def stream_plot(record: MeasurementRecord, path: Path) -> Path | None:
    """A streaming measurement's TTFT and ITL distributions against its baseline's, written
    to ``path`` (None: it has no stream histograms)."""
    hists = record.stream_histograms or {}
    if not any(_hist(hists.get(key)) for key, _, _ in STREAM_PANELS):
        return None
    fig = new_figure(11, 7.6)
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


def curve_groups(
    records: Sequence[MeasurementRecord],
) -> dict[tuple[str, str, str, int, str], list[MeasurementRecord]]:
    """The measurements of each curve: by test, model, protocol, batch size and arrival."""
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


def curve_plot(
    key: tuple[str, str, str, int, str], records: list[MeasurementRecord], path: Path
) -> Path | None:
    """One curve's latency against throughput over its load levels, written to ``path``
    (None: fewer than two points have figures)."""
    test, model, protocol, batch, arrival = key
    points = []
    for r in sorted(records, key=lambda r: (_load_of(r) or 0, r.index)):
        f = summary_figures(r)
        if f["throughput"] is None or f["p50_ms"] is None or f["p99_ms"] is None:
            continue
        points.append((r, _load_of(r), f["throughput"], f["p50_ms"], f["p99_ms"]))
    if len(points) < 2:
        return None
    fig = new_figure(8, 5)
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
