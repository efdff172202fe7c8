"""A/B comparison of a capacity without two searches.

A capacity search measures six to ten load levels; doing it on both arms would double that,
and compare two noisy searches whose levels need not even coincide. Instead:

1. search once, on the **reference**: its capacity is reached at load ``L``, and ``U`` is the
   next level up (the first that broke a bound, or one growth step above a plateau);
2. compare both arms **interleaved** (the usual A/B design, :func:`baseline.ab.run_ab`) at
   ``L`` and at ``U``.

The candidate's capacity is then placed against the reference's by where it breaks:

- it breaks a bound at ``L``, where the reference holds, and the limiting figure is
  significantly worse there: its capacity is **below** the reference's (regression);
- it holds the bounds at ``U``, where the reference breaks, and the limiting figure is
  significantly better there: its capacity is **above** (improvement);
- otherwise both break between ``L`` and ``U``: the capacity is the same to the search's
  resolution, and :func:`same_capacity` decides at ``L``: the throughput over concurrency,
  the limiting latency over a request rate (where both arms deliver the offered rate).

Two measurements, each at the A/B budget, not two searches; and the comparison happens
exactly where a regression of capacity shows first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from pytest_triton_perf.baseline.ab import ABOutcome, ABPlan, Refresh, run_ab
from pytest_triton_perf.baseline.compare import GateSettings, compare_results
from pytest_triton_perf.capacity import CapacityResult, bound_metric, breaches
from pytest_triton_perf.measure.result import PerfResult
from pytest_triton_perf.numbers import fmt
from pytest_triton_perf.sla import BOUNDS
from pytest_triton_perf.verdicts import (
    IMPROVEMENT,
    INCONCLUSIVE,
    PASS,
    REGRESSION,
    Comparison,
)


@dataclass(frozen=True)
class CapacityAB:
    """The outcome of an A/B capacity comparison."""

    search: CapacityResult  # the search on the reference
    at_load: ABOutcome  # both arms at the reference's capacity load L
    above: ABOutcome | None  # both arms at the next level U (None: no level above)
    comparisons: list[Comparison]  # capacity first, then the error rate at L
    candidate: PerfResult  # the candidate at L, as a capacity result
    reference: PerfResult  # the reference at L, as a capacity result

    def info(self) -> dict[str, Any]:
        """What the reports say about the design."""
        levels = [("load", self.at_load)] + ([("above", self.above)] if self.above else [])
        return {
            **self.at_load.info(),
            "capacity_levels": {
                name: {
                    "level": _level(outcome.candidate),
                    "reference": _figures(outcome.reference),
                    "candidate": _figures(outcome.candidate),
                    "design": outcome.info(),
                }
                for name, outcome in levels
            },
        }


def _level(result: PerfResult) -> float | None:
    w = result.workload
    return float(w.concurrency) if w.arrival == "closed" and w.concurrency else w.request_rate


def _figures(result: PerfResult) -> dict[str, float | None]:
    s = result.summary()
    return {k: s[k] for k in ("throughput", "p50_ms", "p99_ms", "avg_ms", "error_rate")}


def _compared(outcome: ABOutcome, gate: GateSettings) -> dict[str, Comparison]:
    comps = outcome.comparisons
    if comps is None:  # Mann-Whitney: compared afterwards, from the merged arms
        comps = compare_results(
            [outcome.reference.to_dict()], outcome.candidate.to_dict(), gate, mode="ab"
        )
    return {c.metric: c for c in comps}


def _decided(comps: dict[str, Comparison], metric: str, verdict: str) -> list[str]:
    """Which of the limiting figure, the median and the throughput got ``verdict``: a p99
    needs many requests to be decided, the median and the throughput fewer."""
    return [
        m
        for m in dict.fromkeys((metric, "p50_ms", "throughput"))
        if (c := comps.get(m)) is not None and c.verdict == verdict
    ]


#: Over a request rate, the latencies that stand in for the limiting one when it was not
#: decided: the tail nearest to p99 that is decided more often, then the median.
LATENCY_FALLBACK = ("p95_ms", "p50_ms")


@dataclass(frozen=True)
class SameLevel:
    """What decides a capacity both arms reach to the search's resolution."""

    verdict: str
    note: str
    comparison: Comparison | None  # the comparison that decided; None: none could


def same_capacity(axis: str, comps: Mapping[str, Comparison], limiting: str) -> SameLevel:
    """The verdict when both arms hold the bounds at L and break them at the next level.

    Over concurrency (a closed loop) the throughput at L decides: a slower candidate
    completes fewer requests. Over a request rate (an open loop) both arms deliver the
    offered rate, so throughput cannot tell them apart: the **limiting latency** at L
    decides, the figure of the bound the reference breaks at the next level (``limiting``,
    a bound key such as ``p99_ms``; ``max_error_rate`` is the error rate,
    ``min_slo_attainment`` the SLO attainment of a capacity by goodput). Where that one
    was not decided, p95 and then p50 (:data:`LATENCY_FALLBACK`) may show a regression or
    an improvement (the paired analysis decides those under Holm's adjustment across the
    measurement's metrics), but only the limiting latency itself passes: a pass of
    another figure says nothing about the bound that sets the capacity. Nothing decided is
    ``inconclusive``, never a pass without a test. So a false pass has probability at
    most alpha (the limiting metric's own), a false alarm at most alpha over the metrics
    together (Holm).
    """
    metric = bound_metric(limiting) if limiting in BOUNDS else limiting
    if axis == "request_rate":
        chain = tuple(dict.fromkeys((metric, *LATENCY_FALLBACK)))
        what = "an open loop delivers the offered rate in both arms, so latency decides"
    else:
        chain = ("throughput",)
        what = "compared on throughput"
    tried = []
    for name in chain:
        c = comps.get(name)
        if c is None:
            continue
        tried.append(f"{name} {c.verdict}")
        if c.verdict in (REGRESSION, IMPROVEMENT) or (c.verdict == PASS and name == chain[0]):
            return SameLevel(
                c.verdict,
                f"both arms break the bounds between it and the next level: the same "
                f"capacity to the search's resolution; {what}: {name} {c.verdict}"
                + (f" ({c.change_pct:+.1f}%)" if c.change_pct is not None else "")
                + (f"; {c.note}" if c.note else ""),
                c,
            )
    return SameLevel(
        INCONCLUSIVE,
        f"both arms break the bounds between it and the next level; {what}, and none of "
        f"{', '.join(chain)} was decided ({', '.join(tried) or 'none compared'})",
        None,
    )


def compare_capacity(
    measure: Callable[..., PerfResult],
    search: Callable[[str], CapacityResult],
    *,
    reference: str,
    candidate: str,
    model: str,
    plan: ABPlan,
    gate: GateSettings,
    refresh: Refresh | None = None,
) -> CapacityAB | None:
    """Search the reference's capacity, then compare both arms at its load and one level up.
    ``measure(name, level, settings=...)`` measures one arm at one level (:func:`run_ab`
    passes each block's settings); ``search(name)`` runs the capacity search
    on one arm. None when the reference has no capacity within the bounds."""
    found = search(reference)
    if found.load is None or found.capacity is None:
        return None
    axis = found.over
    names = (reference, candidate)  # a refresh may serve the arms under new names

    def at(level: float) -> ABOutcome:
        nonlocal names
        value: float = int(level) if axis == "concurrency" else level

        def run(name: str, **kwargs: Any) -> PerfResult:
            return measure(name, {axis: value}, **kwargs)

        outcome = run_ab(
            run,
            reference=names[0],
            candidate=names[1],
            plan=plan,
            gate=gate,
            model=model,
            refresh=refresh,
        )
        names = outcome.served or names
        return outcome

    low = at(found.load)
    high = at(found.next_load) if found.next_load is not None else None
    bounds = found.bounds
    low_comps = _compared(low, gate)
    cand_low = breaches(low.candidate, bounds)
    ref_low = breaches(low.reference, bounds)
    cap_ref = low.reference.throughput
    cap_cand = low.candidate.throughput
    change = (cap_cand / cap_ref - 1) * 100 if cap_ref else None
    verdict, note = PASS, ""
    ci: tuple[float, float] | None = None
    high_ok = (
        high is not None
        and not breaches(high.candidate, bounds)
        and bool(breaches(high.reference, bounds))
    )
    where = f"{axis} {fmt(_level(low.candidate))}"
    if cand_low and not ref_low:
        key = cand_low[0].split(" ", 1)[0]
        metric = bound_metric(key)
        # The limiting figure itself, or (a p99 needs many requests to be decided) the
        # median or the throughput: significantly worse at L means the candidate is slower.
        worse = _decided(low_comps, metric, REGRESSION)
        if worse:
            verdict = REGRESSION
            note = (
                f"at {where} (the reference's capacity) the candidate breaks "
                f"{', '.join(cand_low)} where the reference holds, and its {', '.join(worse)} "
                f"is significantly worse there: its capacity is below the reference's"
            )
        else:
            verdict = INCONCLUSIVE
            note = (
                f"at {where} the candidate breaks {', '.join(cand_low)}, the reference "
                f"holds, but neither {metric} nor p50 nor throughput is significantly worse: "
                f"both sit at the bound"
            )
    elif high_ok:
        assert high is not None
        high_comps = _compared(high, gate)
        key = breaches(high.reference, bounds)[0].split(" ", 1)[0]
        metric = bound_metric(key)
        cap_cand = high.candidate.throughput
        change = (cap_cand / cap_ref - 1) * 100 if cap_ref else None
        up = f"{axis} {fmt(_level(high.candidate))}"
        better = _decided(high_comps, metric, IMPROVEMENT)
        if better:
            verdict = IMPROVEMENT
            note = (
                f"at {up}, one level above the reference's capacity, the candidate holds "
                f"every bound where the reference breaks {metric}: its capacity is higher"
            )
    if verdict == PASS:
        # Both break between L and U (or the candidate holds at U narrowly): the same
        # capacity to the search's resolution, compared at L by the same-level rule.
        limit = breaches(high.reference, bounds) if high is not None else ()
        key = limit[0].split(" ", 1)[0] if limit else found.limited_by
        decided = same_capacity(axis, low_comps, key)
        narrowly = "the candidate holds the bounds at the next level narrowly; " if high_ok else ""
        verdict, note = decided.verdict, f"at {where}: {narrowly}{decided.note}"
        cap_cand = low.candidate.throughput
        change = (cap_cand / cap_ref - 1) * 100 if cap_ref else None
        if decided.comparison is not None and decided.comparison.metric == "throughput":
            change, ci = decided.comparison.change_pct, decided.comparison.change_ci
    capacity = Comparison(
        "capacity",
        verdict,
        "ab",
        baseline=cap_ref,
        current=cap_cand,
        change_pct=change,
        p_value=None,
        note=note,
    )
    comps = [capacity]
    if "error_rate" in low_comps:
        comps.append(low_comps["error_rate"])
    if ci is not None:
        comps[0] = replace(capacity, change_ci=ci)
    return CapacityAB(
        search=found,
        at_load=low,
        above=high,
        comparisons=comps,
        candidate=low.candidate.as_capacity(cap_cand),
        reference=low.reference.as_capacity(found.capacity),
    )
