"""The capacity search: growth then bisection, or a rate ramp and one steady level (the
package's docstring describes both)."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, get_args

from pytest_triton_perf.capacity.bounds import (
    ATTAINMENT_KEY,
    AXES,
    LATENCY_KEYS,
    SEARCH_KEYS,
    latency_bounds,
)
from pytest_triton_perf.capacity.levels import MAX_STEPS, Level, Levels, limiting_key
from pytest_triton_perf.capacity.ramp import RampFn, ramp_and_confirm
from pytest_triton_perf.capacity.result import (
    FULL_PHASES,
    CapacityResult,
    CapacityStep,
    load_text,
)
from pytest_triton_perf.errors import ArgumentError
from pytest_triton_perf.measure.result import PerfResult
from pytest_triton_perf.numbers import fmt

if TYPE_CHECKING:  # the engine pulls in the protocol clients: not at import time
    from pytest_triton_perf.measure.engine import MeasureSettings

#: Default highest load tried.
DEFAULT_LIMIT = {"concurrency": 1024.0, "request_rate": 1_000_000.0}
#: Growth factor per step, and the stop rule on throughput gains.
GROWTH = 2.0
MIN_GAIN = 0.05
GAIN_STEPS = 2
#: Relative resolution of a rate bisection (concurrency bisects to 1).
RATE_RESOLUTION = 0.05
#: ... and of the bisection after a ramp (unless ``resolution`` is given): the ramp's
#: bracket, from its steady level at 90% of the knee to the first bucket that broke, is
#: 15-25% wide; one level in its middle closes it to 10%. On `wait`
#: (``benchmarks/capacity_ramp.py``) that answered within 3% of the search's capacity in
#: 0.35-0.5 of its time; bisecting on to 5% took 3 more levels near the knee, where
#: windows extend while unstable (0.56-0.62 of the search's time).
RAMP_RESOLUTION = 0.10
#: Warm-up of the levels after the first: the server is warm by then, and the queue of the
#: new level settles within it.
LATER_WARMUP_S = 0.5
#: How a capacity is searched: a rate ramp and one steady level, or growth and bisection;
#: and each axis' default (a closed loop cannot ramp its rate: it has none to set).
CapacityMethod = Literal["ramp", "search"]
METHODS: tuple[CapacityMethod, ...] = get_args(CapacityMethod)
DEFAULT_METHOD: dict[str, CapacityMethod] = {"concurrency": "search", "request_rate": "ramp"}


def level_settings(settings: MeasureSettings, index: int) -> MeasureSettings:
    """The settings of a search's level number ``index`` (0 first): after the first, the
    warm-up is at most :data:`LATER_WARMUP_S`."""
    if index == 0:
        return settings
    return dataclasses.replace(settings, warmup_s=min(settings.warmup_s, LATER_WARMUP_S))


def _number(name: str, value: Any, *, integer: bool, minimum: float) -> float | None:
    if value is None:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok and integer:
        ok = float(value).is_integer()
    if not ok or not math.isfinite(float(value)) or float(value) < minimum:
        what = "an integer" if integer else "a number"
        raise ArgumentError(f"capacity({name}={value!r}): {what} >= {minimum:g} is accepted")
    return float(value)


def find_capacity(
    measure: Callable[[Level], PerfResult],
    bounds: Mapping[str, float],
    *,
    over: str = "concurrency",
    start: float | None = None,
    limit: float | None = None,
    resolution: float | None = None,
    model: str = "",
    growth: float = GROWTH,
    min_gain: float = MIN_GAIN,
    gain_steps: int = GAIN_STEPS,
    then: float | None = None,
    method: str | None = None,
    ramp: RampFn | None = None,
) -> CapacityResult:
    """Search the highest load within ``bounds`` (SLA keys; the latency bounds and
    ``max_error_rate`` limit it). ``measure({"concurrency": 4})`` or
    ``measure({"request_rate": 120.0})`` measures one level. See the module's docstring.

    A ``start`` above the capacity is not fatal: the search halves the load until a level
    holds, then bisects. ``then`` is the level tried right after ``start`` instead of
    ``start * growth``: a search that knows a bracket already (a configuration search's
    longer rung starting from a shorter rung's answer) measures its two ends first.

    ``method``: ``"search"`` (growth, then bisection) or ``"ramp"`` (over ``request_rate``:
    one pass of a rising rate, then one steady level below its knee; see the module's
    docstring), which ``ramp(plan, breaks)`` runs (``measure.engine.measure_ramp`` on the
    same model). Default: ``"ramp"`` over a rate when ``ramp`` is given and no ``then``,
    else ``"search"``."""
    if over not in AXES:
        raise ArgumentError(
            f"capacity(over={over!r}): 'concurrency' (closed loop) or 'request_rate' (open "
            f"loop) is accepted"
        )
    chosen = check_method(method, over)
    if chosen == "ramp" and ramp is None:
        if method is not None:
            raise ArgumentError(
                "capacity(method='ramp'): no rate ramp to run; pass ramp=... (the engine's "
                "measure_ramp bound to the server and model), or method='search'"
            )
        chosen = "search"
    if then is not None and method is None:
        chosen = "search"  # a known bracket: its two ends, not a pass over every rate
    limits = latency_bounds(bounds)
    if not any(k in SEARCH_KEYS for k in limits):
        raise ArgumentError(
            f"capacity of model '{model}': no latency bound to search under; give one in the "
            f"test's sla marker (e.g. @pytest.mark.sla(p99_ms=30)) or as bounds={{'p99_ms': 30}} "
            f"(latency keys: {', '.join(LATENCY_KEYS)}), or search by goodput with "
            f"attainment=0.9 and slo={{...}}"
        )
    integer = over == "concurrency"
    first = _number("start", start, integer=integer, minimum=1 if integer else 1e-3)
    top = _number("limit", limit, integer=integer, minimum=1 if integer else 1e-3)
    step_res = _number("resolution", resolution, integer=integer, minimum=1 if integer else 1e-6)
    if top is None:
        top = DEFAULT_LIMIT[over]
    if first is not None and first > top:
        raise ArgumentError(f"capacity(start={start!r}, limit={limit!r}): start exceeds the limit")
    started = time.perf_counter()
    levels = Levels(measure, limits, over)
    steps, notes = levels.steps, levels.notes

    if first is None:
        if integer:
            first = 1.0
        else:
            # A serial client's throughput is a rate the model serves with no queue; an
            # open loop at half of it starts well inside the bounds.
            probe = levels.run(1, "probe", "concurrency")
            first = max(probe.throughput * 0.5, 1e-3)
            notes.append(
                f"started at half the closed-loop throughput at concurrency 1 "
                f"({fmt(probe.throughput)} infer/s)"
            )
        first = min(first, top)

    good: CapacityStep | None = None
    bad: CapacityStep | None = None
    limited_by = ""
    bottom = 1.0 if integer else first / growth**6
    ramped = False  # a ramp bracketed the knee: the bisection stops at RAMP_RESOLUTION
    if chosen == "ramp" and first < top:
        assert ramp is not None
        outcome = ramp_and_confirm(levels, ramp, first, top, bottom)
        if isinstance(outcome, float):
            first = outcome  # no knee within the ramp: the search goes on from there
        else:
            good, bad, limited_by = outcome
            ramped = True
    if good is None and bad is None:
        following = _number("then", then, integer=integer, minimum=1 if integer else 1e-3)
        good, bad, limited_by = _grow(
            levels, first, top, bottom, following, growth, min_gain, gain_steps
        )

    if good is not None and bad is not None and bad.load > good.load:
        lo, hi = good.load, bad.load
        while levels.full < MAX_STEPS:
            if integer:
                if hi - lo <= (step_res or 1):
                    break
                mid = float((int(lo) + int(hi)) // 2)
            else:
                relative = RAMP_RESOLUTION if ramped else RATE_RESOLUTION
                if hi / lo <= 1 + (step_res / lo if step_res else relative):
                    break
                mid = math.sqrt(lo * hi)
            step = levels.run(mid, "bisect")
            if step.passed:
                lo = mid
            else:
                hi, bad = mid, step
        limited_by = limiting_key(bad, limits)
    elif bad is not None and not limited_by:
        limited_by = limiting_key(bad, limits)
    if not limited_by:
        limited_by = "limit"  # MAX_STEPS reached while growing
        notes.append(f"stopped after {MAX_STEPS} levels")

    passing = [s for s in steps if s.passed and s.phase in FULL_PHASES]
    if not passing:
        failed = [s for s in steps if s.phase in FULL_PHASES]
        return CapacityResult(
            model, over, limits, None, None, tuple(steps), limited_by, None, None,
            failed[-1].load if failed else None, time.perf_counter() - started, tuple(notes),
        )  # fmt: skip
    # The highest level that held every bound; the knee, the lowest that reaches (within
    # min_gain) the best throughput measured within the bounds.
    best = max(passing, key=lambda s: s.load)
    peak = max(s.throughput for s in passing)
    knee = min(s.load for s in passing if s.throughput >= (1 - min_gain) * peak)
    if best.result.client_bound:
        # The design's rule: never report the client's limit as the server's.
        notes.append(
            f"the load generator was saturated at {over} {load_text(best.load, over)}: the "
            f"capacity may be the client's limit, not the model's (raise workers=)"
        )
    target = limits.get(ATTAINMENT_KEY)
    ci = best.result.slo_attainment_interval
    if target is not None and ci is not None and ci[0] < target <= ci[1]:
        notes.append(
            f"marginal: at the capacity level the SLO attainment "
            f"{fmt(best.result.slo_attainment)} has a 95% interval {ci[0]:.2f}-{ci[1]:.2f} "
            f"that straddles {target:g} (the point estimate decides; longer windows narrow it)"
        )
    above = [s.load for s in steps if not s.passed and s.load > best.load]
    next_load = float(
        min(above) if above else (math.ceil(best.load * growth) if integer else best.load * growth)
    )
    return CapacityResult(
        model=model,
        over=over,
        bounds=limits,
        capacity=best.throughput,
        load=best.load,
        steps=tuple(steps),
        limited_by=limited_by,
        knee=knee,
        result=best.result,
        next_load=next_load,
        duration_s=time.perf_counter() - started,
        notes=tuple(notes),
    )


def check_method(method: Any, over: str) -> CapacityMethod:
    """The method of a capacity search over ``over``: ``method``, or the axis' default
    (:data:`DEFAULT_METHOD`); ArgumentError naming a value that is not accepted."""
    if method is None:
        return DEFAULT_METHOD[over]
    if method not in METHODS:
        raise ArgumentError(
            f"capacity(method={method!r}): 'ramp' (one open-loop pass of a rising rate, "
            f"then one steady level below its knee; the default over request_rate) or "
            f"'search' (doubling, then bisection; the default over concurrency) is accepted"
        )
    if method == "ramp" and over != "request_rate":
        raise ArgumentError(
            f"capacity(method='ramp', over={over!r}): a ramp raises an open loop's rate, so "
            f"it needs over='request_rate'; over concurrency use method='search'"
        )
    chosen: CapacityMethod = method
    return chosen


def _grow(
    levels: Levels,
    load: float,
    top: float,
    bottom: float,
    following: float | None,
    growth: float,
    min_gain: float,
    gain_steps: int,
) -> tuple[CapacityStep | None, CapacityStep | None, str]:
    """Growth from ``load`` (descending first when it breaks a bound): the last level that
    held, the first that broke, and ``plateau`` or ``limit`` when either stopped it."""
    integer = levels.over == "concurrency"
    good: CapacityStep | None = None
    bad: CapacityStep | None = None
    grown: list[float] = []
    while levels.full < MAX_STEPS:
        step = levels.run(load, "grow")
        if not step.passed:
            bad = step
            if good is None and load > bottom:
                # A start given above the capacity: descend until a level holds.
                load = max(bottom, math.floor(load / growth) if integer else load / growth)
                continue
            break
        good = step
        grown.append(step.throughput)
        if len(grown) > gain_steps and max(grown[-gain_steps:]) < (1 + min_gain) * max(
            grown[:-gain_steps]
        ):
            return good, bad, "plateau"
        if load >= top:
            return good, bad, "limit"
        if bad is not None:
            break  # descended: the level above this one broke a bound already
        if following is not None and following > load:
            load, following = min(top, following), None
            continue
        load = min(top, math.ceil(load * growth) if integer else load * growth)
    return good, bad, ""
