"""What a capacity search or a configuration search found, as text the reports share.

A record's ``analysis`` holds ``{"capacity": CapacityResult.to_dict()}`` or
``{"search": SearchResult.to_dict()}``. The terminal summary and the Markdown summary render
the same headline, step table and ranked table from here (the terminal aligns the rows, the
Markdown summary makes them a table), so the two never tell the same search two ways. The
dicts may come straight from ``to_dict()`` or back from a results file; every field is read
defensively (a missing figure reads ``-``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pytest_triton_perf import metrics
from pytest_triton_perf.numbers import fmt, fmt_mb, num
from pytest_triton_perf.sla import BOUNDS
from pytest_triton_perf.verdicts import MeasurementRecord

#: Latency figures a capacity step carries, in catalogue order (p50 ... p99, avg).
LATENCY_KEYS = tuple(m.name for m in metrics.CATALOGUE if m.unit == "ms")
#: The phases of a capacity search's steps that are not levels of it: a rate search's
#: closed-loop probe, and a rate ramp's buckets.
NOT_LEVELS = ("probe", "ramp")


def capacity_of(record: MeasurementRecord) -> Mapping[str, Any] | None:
    """The capacity search behind ``record`` (``CapacityResult.to_dict()``), or None."""
    found = (record.analysis or {}).get("capacity")
    return found if isinstance(found, Mapping) else None


def search_of(record: MeasurementRecord) -> Mapping[str, Any] | None:
    """The configuration search behind ``record`` (``SearchResult.to_dict()``), or None."""
    found = (record.analysis or {}).get("search")
    return found if isinstance(found, Mapping) else None


def duration_text(seconds: Any) -> str:
    """``41 s``, ``4.1 min``, ``1.2 h``; ``-`` when unknown."""
    s = num(seconds)
    if s is None:
        return "-"
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def load_text(over: Any, load: Any, short: bool = False) -> str:
    """A load level: ``concurrency 8`` / ``request rate 120/s``; ``short``: ``c=8`` /
    ``120/s`` (plot labels)."""
    v = num(load)
    if v is None:
        return "-"
    if over == "request_rate":
        return f"{v:g}/s" if short else f"request rate {v:g}/s"
    return f"c={v:g}" if short else f"concurrency {v:g}"


def bound_text(key: str, bound: Any) -> str:
    """An SLA bound as written in the marker: ``p99_ms <= 30``, ``min_throughput >= 100``."""
    meta = BOUNDS.get(key)
    op = "<=" if meta is None or meta.upper else ">="
    v = num(bound)
    return f"{key} {op} {v:g}" if v is not None else f"{key} {op} {bound}"


def bounds_text(bounds: Mapping[str, Any] | None) -> str:
    """Every bound, comma-separated, in the metric catalogue's order (the results file
    sorts keys): ``p99_ms <= 30, max_error_rate <= 0``."""
    order = {key: i for i, key in enumerate(BOUNDS)}
    keys = sorted(bounds or {}, key=lambda k: (order.get(k, len(order)), str(k)))
    return ", ".join(bound_text(k, (bounds or {})[k]) for k in keys)


def _steps(cap: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [s for s in cap.get("steps") or [] if isinstance(s, Mapping)]


def _levels(cap: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The steps measured as levels of the search: neither the closed-loop probe of a rate
    search nor a rate ramp's buckets."""
    return [s for s in _steps(cap) if s.get("phase") not in NOT_LEVELS]


def _step_at(cap: Mapping[str, Any], load: Any) -> Mapping[str, Any] | None:
    """The last level measured at ``load`` (a level may be measured again when bisecting)."""
    v = num(load)
    found = None
    for s in _levels(cap):
        if v is not None and num(s.get("load")) == v:
            found = s
    return found


def bounded_latencies(cap: Mapping[str, Any]) -> list[str]:
    """The latency figures the search's bounds limit (``p99_ms``, ...), in catalogue order;
    ``["p99_ms"]`` when no latency is bounded, so a step table always shows a latency."""
    bounds = cap.get("bounds") or {}
    keys = [k for k in LATENCY_KEYS if k in bounds]
    return keys or ["p99_ms"]


def capacity_headline(cap: Mapping[str, Any]) -> str:
    """``capacity: 812.3 infer/s at concurrency 8 (limited by p99_ms <= 30, broken at
    concurrency 9; knee at concurrency 8)``, or, when even the first level breaks a bound,
    ``capacity: none within p99_ms <= 30: concurrency 1 already breaks p99_ms 43.1 > 30``."""
    over = cap.get("over", "concurrency")
    bounds = cap.get("bounds") or {}
    capacity = num(cap.get("capacity"))
    if capacity is None:
        steps = _levels(cap) or _steps(cap)
        text = f"capacity: none within {bounds_text(bounds) or 'the bounds'}"
        if steps:
            first = steps[0]
            breached = ", ".join(map(str, first.get("breached") or [])) or "a bound"
            text += f": {load_text(over, first.get('load'))} already breaks {breached}"
        return text
    limited_by = str(cap.get("limited_by") or "")
    if limited_by in bounds:
        limit = bound_text(limited_by, bounds[limited_by])
        nxt = num(cap.get("next_load"))
        if nxt is not None:
            limit += f", broken at {load_text(over, nxt)}"
    elif limited_by == "plateau":
        limit = "a plateau: throughput stopped growing"
    elif limited_by == "limit":
        top = max((num(s.get("load")) or 0.0 for s in _levels(cap)), default=None)
        limit = "the search limit" + (f" ({load_text(over, top)})" if top else "")
    else:
        limit = limited_by or "-"
    knee = num(cap.get("knee"))
    knee_text = f"knee at {load_text(over, knee)}" if knee is not None else "no knee"
    return (
        f"capacity: {fmt(capacity, 1)} infer/s at {load_text(over, cap.get('load'))} "
        f"(limited by {limit}; {knee_text})"
    )


def capacity_effort(cap: Mapping[str, Any]) -> str:
    """``7 steps in 41 s``; after a rate ramp, ``2 steps and a ramp of 21 buckets in 14 s``."""
    buckets = sum(1 for s in _steps(cap) if s.get("phase") == "ramp")
    n = len(_steps(cap)) - buckets
    ramp = f" and a ramp of {buckets} buckets" if buckets else ""
    return f"{n} step{'s' if n != 1 else ''}{ramp} in {duration_text(cap.get('duration_s'))}"


def capacity_notes(cap: Mapping[str, Any]) -> list[str]:
    """What the search noted on the way (``stopped after 12 levels``), one per line."""
    return [str(n) for n in cap.get("notes") or [] if n]


def capacity_title(cap: Mapping[str, Any]) -> str:
    """``sleepy over concurrency, bounds p99_ms <= 30``."""
    over = "request rate" if cap.get("over") == "request_rate" else "concurrency"
    text = f"{cap.get('model') or '?'} over {over}"
    bounds = bounds_text(cap.get("bounds"))
    return f"{text}, bounds {bounds}" if bounds else text


def capacity_table(cap: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the step table, steps in the order measured: load, phase,
    throughput, each bounded latency, the SLO attainment of a capacity by goodput, the
    error rate when any request failed, and the step's result (``pass``, ``FAIL: p99_ms
    43.1 > 30``; the capacity and knee steps say so)."""
    over = cap.get("over", "concurrency")
    steps = _steps(cap)
    latencies = bounded_latencies(cap)
    errors = any((num(s.get("error_rate")) or 0) > 0 for s in steps)
    header = ["rate /s" if over == "request_rate" else "concurrency", "phase", "infer/s"]
    header += [f"{metrics.BY_NAME[k].short} ms" for k in latencies]
    # A capacity by goodput: each level's SLO attainment (the point estimate decides).
    attained = "min_slo_attainment" in (cap.get("bounds") or {})
    if attained:
        header.append("SLO attained")
    if errors:
        header.append("errors")
    header.append("result")
    found = num(cap.get("capacity")) is not None
    capacity_step = _step_at(cap, cap.get("load")) if found else None
    knee_step = _step_at(cap, cap.get("knee"))
    rows = []
    for s in steps:
        load = num(s.get("load"))
        row = [f"{load:g}" if load is not None else "-", str(s.get("phase") or "-")]
        row.append(fmt(s.get("throughput"), 1))
        row += [fmt(s.get(k)) for k in latencies]
        if attained:
            row.append(fmt(s.get("slo_attainment")))
        if errors:
            rate = num(s.get("error_rate"))
            row.append("-" if rate is None else f"{100 * rate:.3g}%")
        breached = [str(b) for b in s.get("breached") or []]
        passed = s.get("passed", not breached)
        result = "pass" if passed else "FAIL" + (f": {', '.join(breached)}" if breached else "")
        marks = [m for m, step in (("capacity", capacity_step), ("knee", knee_step)) if s is step]
        if marks:
            result += f" ({', '.join(marks)})"
        row.append(result)
        rows.append(row)
    return header, rows


# -- configuration search ---------------------------------------------------------------------

#: Figures of a candidate, as the search's objective names them, with their table header.
_OBJECTIVE_UNITS = {
    "capacity": "infer/s",
    "throughput": "infer/s",
    "p99_ms": "ms",
    "gpu_memory_mb": "MB",
}


def value_text(value: Any) -> str:
    """A configuration value as config.pbtxt reads: ``true``, ``2``, ``0.5``, ``[4, 8]``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(value_text(v) for v in value) + "]"
    v = num(value)
    if v is not None:
        return f"{v:g}"
    return str(value)


def values_text(values: Mapping[str, Any] | None) -> str:
    """``dynamic_batching=true, instance_count=2``; ``-`` for none. Keys sorted, as the
    results file stores them, so a report rendered again from it reads the same."""
    if not values:
        return "-"
    return ", ".join(f"{k}={value_text(values[k])}" for k in sorted(values, key=str))


def objective_text(objective: Any, value: Any) -> str:
    """``812.3 infer/s`` for a capacity, ``21.40 ms`` for a p99, ``1830 MB`` for memory."""
    unit = _OBJECTIVE_UNITS.get(str(objective), "")
    text = fmt_mb(value) if unit == "MB" else fmt(value, 1 if unit == "infer/s" else 2)
    return f"{text} {unit}" if unit and text != "-" else text


def _candidates(search: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [c for c in search.get("candidates") or [] if isinstance(c, Mapping)]


def candidate(search: Mapping[str, Any], name: Any) -> Mapping[str, Any] | None:
    """The candidate called ``name``, or None."""
    if name is None:
        return None
    return next((c for c in _candidates(search) if c.get("name") == name), None)


def committed_candidate(search: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The candidate measuring the committed configuration, or None."""
    named = candidate(search, search.get("committed"))
    if named is not None:
        return named
    return next((c for c in _candidates(search) if c.get("committed")), None)


def short_name(name: Any) -> str:
    """``cfg3`` for ``sleepy__cfg3`` (plot labels), the name itself otherwise."""
    text = str(name)
    return text.rsplit("__", 1)[1] if "__" in text else text


def search_table(search: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the ranked candidate table, best first, in the search's order."""
    header = [
        "rank",
        "candidate",
        "values",
        "objective",
        "capacity",
        "p99 ms",
        "infer/s",
        "GPU MB",
        "CPU MB",
        "SLA",
        "status",
    ]
    objective = search.get("objective")
    best = search.get("best")
    committed = committed_candidate(search)
    predicted = any(isinstance(c.get("prediction"), Mapping) for c in _candidates(search))
    if predicted:
        header.insert(header.index("capacity") + 1, "predicted")
    rows = []
    for c in _candidates(search):
        rank = c.get("rank")
        status = str(c.get("status") or "-")
        marks = []
        if best is not None and c.get("name") == best:
            marks.append("best")
        if c is committed or c.get("committed"):
            marks.append("committed")
        if marks:
            status += f" ({', '.join(marks)})"
        if c.get("note"):
            status += f": {c['note']}"
        cells = [
            str(rank) if rank is not None else "-",
            str(c.get("name") or "?"),
            values_text(c.get("values")),
            objective_text(objective, c.get("objective")),
            fmt(c.get("capacity"), 1),
        ]
        if predicted:
            cells.append(prediction_text(c.get("prediction")))
        rows.append(
            [
                *cells,
                fmt(c.get("p99_ms")),
                fmt(c.get("throughput"), 1),
                fmt_mb(c.get("gpu_memory_mb")),
                fmt_mb(c.get("cpu_memory_mb")),
                "-" if status.startswith("failed") else ("ok" if c.get("sla_ok") else "FAIL"),
                status,
            ]
        )
    return header, rows


def prediction_text(prediction: Any) -> str:
    """A candidate's predicted capacity beside its measurement: ``283.0 (+1%)``, with the
    measurement's error on the prediction where it was checked (``!`` beyond the
    tolerance: the capacity was then searched at full length); ``-`` for none."""
    if not isinstance(prediction, Mapping):
        return "-"
    text = fmt(prediction.get("capacity"), 1)
    error = num(prediction.get("error"))
    if error is not None:
        text += f" ({error:+.0%}{'' if prediction.get('held') else '!'})"
    return text


def cost_text(cost: Any) -> str:
    """``wall 11.5 s, 11.5 server-s, no GPU: 4 levels (9.2 s under load), 3 model loads
    (2.3 s)``; '' for none."""
    if not isinstance(cost, Mapping) or num(cost.get("wall_s")) is None:
        return ""
    gpu = num(cost.get("gpu_s"))
    gpu_text = f"{gpu:.1f} GPU-s" if gpu is not None else "no GPU"
    n = int(num(cost.get("ramps")) or 0)
    ramps = f" and {n} rate ramp{'s' if n != 1 else ''}" if n else ""
    return (
        f"cost: wall {duration_text(cost.get('wall_s'))}, {num(cost.get('server_s')) or 0:.1f} "
        f"server-s, {gpu_text}: {cost.get('levels', 0)} levels{ramps} "
        f"({num(cost.get('measured_s')) or 0:.1f} s under load), {cost.get('loads', 0)} model "
        f"loads ({num(cost.get('load_s')) or 0:.1f} s)"
    )


def search_title(search: Mapping[str, Any]) -> str:
    """``sleepy: objective capacity, halving over 8 configurations``."""
    n = len(_candidates(search))
    return (
        f"{search.get('model') or '?'}: objective {search.get('objective') or '?'}, "
        f"{search.get('strategy') or '?'} over {n} configuration{'s' if n != 1 else ''}"
    )


def search_lines(search: Mapping[str, Any]) -> list[str]:
    """The lines under the ranked table: the best and its lead over the committed
    configuration (the config drift gate's figure), then the time spent and the pruning."""
    objective = search.get("objective")
    lines = []
    best = candidate(search, search.get("best"))
    if best is None:
        lines.append("best: none: no configuration holds the SLA")
    else:
        lines.append(
            f"best: {best.get('name')} ({values_text(best.get('values'))}): "
            f"{objective} {objective_text(objective, best.get('objective'))}"
        )
    committed = committed_candidate(search)
    gap = num(search.get("gap"))
    max_gap = num(search.get("max_config_gap"))
    if committed is not None:
        text = (
            f"committed: {committed.get('name')}: {objective} "
            f"{objective_text(objective, committed.get('objective'))}"
        )
        if best is not None and best.get("name") == committed.get("name"):
            text += "; the committed configuration is the best"
        elif gap is not None:
            lead = "beats it by" if gap > 0 else "is within"
            text += f"; the best {lead} {abs(gap):.1%} on {objective}"
        if max_gap is not None and gap is not None:
            over = "exceeds" if gap > max_gap else "within"
            text += f" (max_config_gap {max_gap:.0%}: {over})"
        lines.append(text)
    candidates = _candidates(search)
    failed = sum(1 for c in candidates if c.get("status") == "failed")
    infeasible = sum(1 for c in candidates if c.get("status") == "infeasible")
    effort = (
        f"searched {len(candidates)} configurations in {duration_text(search.get('duration_s'))}: "
        f"{search.get('pruned', 0)} pruned, {infeasible} infeasible, {failed} failed"
    )
    sla = bounds_text(search.get("sla"))
    if sla:
        effort += f"; SLA {sla}"
    lines.append(effort)
    if search.get("tie"):
        lines.append(str(search["tie"]))
    cost = cost_text(search.get("cost"))
    if cost:
        lines.append(cost)
    lines += [str(n) for n in search.get("notes") or []]
    return lines


def best_diff(search: Mapping[str, Any]) -> str:
    """The best configuration's config.pbtxt diff against the committed one ('' when the
    committed configuration is the best or no diff is known)."""
    best = candidate(search, search.get("best"))
    return str(best.get("config_diff") or "") if best is not None else ""


# -- co-location and memory footprint ---------------------------------------------------------


def group_of(record: MeasurementRecord) -> Mapping[str, Any] | None:
    """The co-location group behind ``record`` (``GroupOutcome.analysis()``), or None: the
    group's one record is its first model's."""
    found = (record.analysis or {}).get("group")
    return found if isinstance(found, Mapping) else None


def footprint_of(record: MeasurementRecord) -> Mapping[str, Any] | None:
    """The memory footprint behind ``record`` (``Footprint.to_dict()``), or None."""
    found = (record.analysis or {}).get("footprint")
    return found if isinstance(found, Mapping) else None


def ratio_text(ratio: Any, interval: Any = None) -> str:
    """A ratio together / alone as a change: ``+23% [+15%, +31%]``; ``-`` when unknown."""
    r = num(ratio)
    if r is None:
        return "-"
    text = f"{100 * (r - 1):+.1f}%"
    if isinstance(interval, (list, tuple)) and len(interval) == 2:
        lo, hi = num(interval[0]), num(interval[1])
        if lo is not None and hi is not None:
            text += f" [{100 * (lo - 1):+.1f}%, {100 * (hi - 1):+.1f}%]"
    return text


def group_title(group: Mapping[str, Any]) -> str:
    """``a + b together: a conc=4 batch=1 grpc, b rate=200/s constant grpc``."""
    models = [str(m) for m in group.get("models") or []]
    loads = group.get("loads") or {}
    return f"{' + '.join(models) or '?'} together: " + ", ".join(
        f"{m} {loads.get(m, '?')}" for m in models
    )


def group_table(group: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """(header, rows): each model's figures together in the same windows and, when the
    interference rounds ran, its p99 and throughput alone and together with the change and
    its 95% interval."""
    models = [str(m) for m in group.get("models") or []]
    figures = group.get("figures") or {}
    costs = group.get("interference") or {}
    header = ["model", "p99 ms", "infer/s"]
    if costs:
        header += [
            "alone p99",
            "together p99",
            "p99 change [95%]",
            "alone infer/s",
            "together infer/s",
            "infer/s change [95%]",
        ]
    rows = []
    for m in models:
        f = figures.get(m) or {}
        row = [m, fmt(f.get("p99_ms")), fmt(f.get("throughput"), 1)]
        if costs:
            c = costs.get(m) or {}
            row += [
                fmt(c.get("alone_p99_ms")),
                fmt(c.get("together_p99_ms")),
                ratio_text(c.get("p99_ratio"), c.get("p99_interval")),
                fmt(c.get("alone_throughput"), 1),
                fmt(c.get("together_throughput"), 1),
                ratio_text(c.get("throughput_ratio"), c.get("throughput_interval")),
            ]
        rows.append(row)
    return header, rows


def group_lines(group: Mapping[str, Any]) -> list[str]:
    """The design line and what the interference analysis noted, per model."""
    lines = [f"design: {group.get('design') or '-'} ({duration_text(group.get('elapsed_s'))})"]
    for m, c in (group.get("interference") or {}).items():
        lines += [f"note: {m}: {n}" for n in (c or {}).get("notes") or [] if n]
    return lines


def footprint_headline(fp: Mapping[str, Any]) -> str:
    """``footprint of hog (loaded as hog__fp): host +201.3 MB, GPU unavailable (...)``."""
    unavailable = fp.get("unavailable") or {}
    parts = []
    for key, label in (("cpu_memory_mb", "host"), ("gpu_memory_mb", "GPU")):
        value = num(fp.get(key))
        if value is None:
            parts.append(f"{label} unavailable ({unavailable.get(key) or 'no source'})")
        else:
            parts.append(f"{label} {value:+.1f} MB")
    devices = fp.get("gpu_memory_mb_by_device") or {}
    if len(devices) > 1:
        parts[-1] += (
            " (" + ", ".join(f"GPU {d} {num(v) or 0:+.1f}" for d, v in devices.items()) + ")"
        )
    return (
        f"footprint of {fp.get('model') or '?'} (loaded as {fp.get('loaded_as') or '?'}): "
        + ", ".join(parts)
    )


def footprint_table(fp: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """(header, rows): each stage's host memory and GPU memory per device (MB)."""
    samples = [s for s in fp.get("samples") or [] if isinstance(s, Mapping)]
    devices = sorted({str(d) for s in samples for d in (s.get("gpu_mb") or {})})
    header = ["stage", "host MB", *(f"GPU {d} MB" for d in devices)]
    rows = []
    for s in samples:
        gpu = s.get("gpu_mb") or {}
        rows.append(
            [str(s.get("stage") or "-"), fmt_mb(s.get("cpu_mb"))]
            + [fmt_mb(gpu.get(d)) for d in devices]
        )
    return header, rows


def footprint_sources(fp: Mapping[str, Any]) -> list[str]:
    """Where the figures came from, and what the measurement noted."""
    lines = [f"{k}: {fp[k]}" for k in ("cpu_source", "gpu_source") if fp.get(k)]
    if fp.get("workload"):
        lines.append(f"under load: {fp['workload']}")
    lines += [f"note: {n}" for n in fp.get("notes") or [] if n]
    return lines
