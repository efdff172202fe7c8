"""Which step of a pipeline a regression comes from. Pure: dicts in, text out.

The comparison decides on the pipeline's own end-to-end figures (window by window, see
:mod:`baseline.compare`); this module only locates a regression it found. Each composing
model's statistics give its server time per request of the pipeline (queue plus compute
input, infer and output, times its requests per pipeline request: ``share_ms``), averaged
over the measured span, so there is one value per run, not per window, and no test of its
own. The located step is the one whose share grew the most against the baseline (the median
over the baseline's runs), named with the part of its server time that grew (queue, or
compute infer, ...) and with how much of the change in the pipeline's mean latency it
accounts for. When no step grew by at least :data:`MIN_SHARE` of that change, the sentence
says that the composing models do not explain it (the time went elsewhere: the network, the
client, the ensemble scheduler).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from statistics import median
from typing import Any

from pytest_triton_perf.verdicts import REGRESSION, Comparison

#: Smallest part of the pipeline's latency change a step must account for to be named.
MIN_SHARE = 0.2
_PARTS = {
    "queue_ms": "queue",
    "compute_input_ms": "compute input",
    "compute_infer_ms": "compute infer",
    "compute_output_ms": "compute output",
}


def _steps(result: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    pipeline = result.get("pipeline") or {}
    return {str(s.get("model")): s for s in pipeline.get("steps") or []}


def _part_ms(step: Mapping[str, Any], part: str) -> float:
    """One part of a step's server time, per request of the pipeline."""
    server = step.get("server") or {}
    return float(server.get(part) or 0.0) * float(step.get("calls_per_request") or 0.0)


def _mean_latency(result: Mapping[str, Any]) -> float | None:
    latency = result.get("latency_ms") or {}
    value = latency.get("avg")
    return float(value) if value is not None else None


def locate_step(
    baseline_results: Sequence[Mapping[str, Any]], current: Mapping[str, Any]
) -> str | None:
    """The sentence naming the step behind a regression of ``current`` (a pipeline's
    ``PerfResult.to_dict()``) against ``baseline_results``; None when the current result or
    every baseline run has no pipeline."""
    now = _steps(current)
    runs = [_steps(r) for r in baseline_results]
    runs = [r for r in runs if r]
    if not now or not runs:
        return None
    changes = []
    for name, step in now.items():
        before = [r[name] for r in runs if name in r]
        if not before:
            continue
        parts = {p: _part_ms(step, p) - median(_part_ms(b, p) for b in before) for p in _PARTS}
        base = median(float(b.get("share_ms") or 0.0) for b in before)
        changes.append((sum(parts.values()), name, base, float(step.get("share_ms") or 0.0), parts))
    if not changes:
        return None
    delta, name, base, cur, parts = max(changes)
    latencies = [v for r in baseline_results if (v := _mean_latency(r)) is not None]
    cur_latency = _mean_latency(current)
    latency_delta = (
        cur_latency - median(latencies) if latencies and cur_latency is not None else None
    )
    part = max(parts, key=lambda p: parts[p])
    figures = (
        f"{base:.3g} -> {cur:.3g} ms per request of the pipeline ({delta:+.3g} ms, mostly "
        f"{_PARTS[part]} {parts[part]:+.3g} ms)"
    )
    of_all = ""
    if latency_delta is not None and latency_delta > 0:
        of_all = (
            f", {delta / latency_delta:.0%} of the {latency_delta:+.3g} ms change in mean latency"
        )
    if delta <= 0 or (
        latency_delta is not None and latency_delta > 0 and delta < MIN_SHARE * latency_delta
    ):
        return (
            f"no step of the pipeline explains it: the largest growth of a step's server time is "
            f"'{name}' {figures}{of_all}"
        )
    return (
        f"located in step '{name}': server time {figures}{of_all}, the largest growth of "
        f"the pipeline's {len(changes)} steps"
    )


def name_regressed_step(
    comparisons: Sequence[Comparison],
    baseline_results: Sequence[Mapping[str, Any]],
    current: Mapping[str, Any],
) -> list[Comparison]:
    """``comparisons`` with the step sentence of :func:`locate_step` prepended to the note
    of each regression (unchanged when nothing regressed or there is no pipeline)."""
    out = list(comparisons)
    if not any(c.verdict == REGRESSION for c in out):
        return out
    sentence = locate_step(baseline_results, current)
    if sentence is None:
        return out
    return [
        replace(c, note=f"{sentence}; {c.note}" if c.note else sentence)
        if c.verdict == REGRESSION
        else c
        for c in out
    ]
