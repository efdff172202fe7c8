"""The plots of analyses: capacity searches, configuration searches and co-location
groups, each a figure from the analysis's own document."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
from pytest_triton_perf.report.plots.canvas import (
    BASELINE_COLOR,
    BREACH_COLOR,
    CURRENT_COLOR,
    LATENCY_COLORS,
    P99_COLOR,
    STATUS_STYLE,
    new_figure,
    safe_name,
    unique_names,
)
from pytest_triton_perf.report.text import fmt, num
from pytest_triton_perf.sla import BOUNDS
from pytest_triton_perf.verdicts import MeasurementRecord

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


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
    drawn = [
        s
        for s in cap.get("steps") or []
        if isinstance(s, Mapping) and num(s.get("throughput")) is not None
    ]
    drawn.sort(key=lambda s: num(s.get("load")) or 0.0)
    # A rate ramp's buckets are a faint curve of their own, under the levels, unlabelled.
    ramp = [s for s in drawn if s.get("phase") == "ramp"]
    steps = [s for s in drawn if s.get("phase") != "ramp"]
    keys = [k for k in bounded_latencies(cap) if any(num(s.get(k)) is not None for s in drawn)]
    if not keys:
        return None
    fig = new_figure(8, 5)
    ax = fig.subplots()
    if ramp:
        top_key = next((k for k in reversed(keys) if k != "avg_ms"), keys[-1])
        ax.plot(*_xy(ramp, "throughput", top_key), ".-", color="#bbbbbb", label="ramp")
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
    fig = new_figure(8, 5.5)
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
    fig = new_figure(4 + 2.2 * len(models), 4.8)
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


def analysis_plots(records: Sequence[MeasurementRecord], out: Path) -> list[Path]:
    """The capacity and search plots of ``records`` in ``out``."""
    figures: list[tuple[str, str, Figure]] = []
    for r in records:
        raw = f"{r.test}\0{r.index}"
        stem = f"{safe_name(r.test)}-{r.index}"
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
    names = unique_names([(raw, name) for raw, name, _ in figures])
    written = []
    for raw, _, fig in figures:
        path = out / f"{names[raw]}.png"
        fig.savefig(path, format="png")
        written.append(path)
    return written
