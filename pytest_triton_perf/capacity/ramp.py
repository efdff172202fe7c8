"""A capacity over request rate in one pass: a rate ramp, then one steady level below its
knee (the package's docstring says why and how)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from pytest_triton_perf.capacity.bounds import LATENCY_KEYS, breaches
from pytest_triton_perf.capacity.levels import MAX_STEPS, Levels, limiting_key
from pytest_triton_perf.capacity.result import CapacityStep
from pytest_triton_perf.measure.ramp import MAX_GRACE_S, find_knee, plan_ramp
from pytest_triton_perf.measure.result import PerfResult

if TYPE_CHECKING:
    from pytest_triton_perf.measure.ramp import RampPlan, RampRun

#: Runs a rate ramp on the model searched: ``ramp(plan, breaks)``, ``breaks(bucket)`` true
#: when a bucket breaks a bound (``measure.engine.measure_ramp``, bound to server and model).
RampFn = Callable[["RampPlan", Callable[[PerfResult], bool]], "RampRun"]
#: The steady level confirming a ramp's knee runs at this share of it: the knee is read
#: from short buckets (a few percent of noise in the rate the server answered), and a
#: level right at it queues (waiting grows as 1 / (1 - utilisation)); a level that breaks
#: even here descends by the same factor, leaving a bracket the bisection closes in two.
RAMP_MARGIN = 0.9
#: A ramp's bucket is judged this many times its largest latency bound after it ends
#: (seconds; by then an unanswered request is over the bound anyway).
RAMP_GRACE = 2.0


def ramp_and_confirm(
    levels: Levels, ramp: RampFn, first: float, top: float, bottom: float
) -> tuple[CapacityStep | None, CapacityStep | None, str] | float:
    """One ramp from ``first``, then one steady level at :data:`RAMP_MARGIN` of its knee
    (at ``top`` itself when the ramp reached it within the bounds); while that level breaks
    a bound, the next is :data:`RAMP_MARGIN` lower, until one holds and the bisection can
    close the bracket. Returns the last level that held, the lowest that broke and what
    limited the capacity; or the rate to search on from where the ramp saw no knee (its
    first buckets broke, or it ended within the bounds below ``top``)."""
    limits = levels.limits
    latency = [v / 1e3 for k, v in limits.items() if k in LATENCY_KEYS]
    grace = RAMP_GRACE * max(latency) if latency else MAX_GRACE_S
    run = ramp(plan_ramp(first, top, grace_s=grace), lambda r: bool(breaches(r, limits)))
    ramped = [
        CapacityStep(b.rate, "ramp", b.result, breaches(b.result, limits)) for b in run.buckets
    ]
    levels.steps.extend(ramped)
    levels.notes.extend(run.notes)
    knee = find_knee(run, [s.passed for s in ramped])
    ran_out = not run.stopped and bool(ramped) and ramped[-1].passed
    searched_on = ran_out and run.plan.ramp.end < top
    levels.notes.append(
        f"ramp: {len(ramped)} buckets from {first:.4g}/s in {run.duration_s:.1f} s, "
        f"{knee.describe()}"
        + ("; it ended within the bounds: searched on from its end" if searched_on else "")
    )
    if knee.rate is None:
        return first  # its first buckets broke: search from its start, descending
    if searched_on:
        return run.plan.ramp.end
    # The first bucket above the knee that broke a bound (None: the ramp reached the top).
    broke = next((s for s in ramped if not s.passed and s.load > (knee.held or 0)), None)
    if ran_out:
        load, limit_key, broke = top, "limit", None
    else:
        load = min(top, knee.rate * RAMP_MARGIN)
        limit_key = limiting_key(broke, limits)
    bad: CapacityStep | None = None
    phase = "confirm"
    while levels.full < MAX_STEPS:
        step = levels.run(load, phase)
        if step.passed:
            if bad is None:
                # The confirm level held: the bisection closes the bracket up to the
                # first bucket that broke, at full length and the search's resolution,
                # so the capacity is as close to the knee as the search's (the margin
                # alone left it 7-8% below the search's on the `wait` model).
                bad = broke
            return step, bad, limit_key if bad is None else ""
        bad, phase = step, "descend"
        if load <= bottom:
            break
        load = max(bottom, load * RAMP_MARGIN)
    return None, bad, ""
