"""Capacity: the highest load a model sustains while every latency bound of its SLA holds.

:func:`find_capacity` searches over one load axis, concurrency (closed loop) or request rate
(open loop), with a measurement function it is given:

1. **Growth.** From ``start``, multiply the load by ``growth`` (2) until a bound breaks, the
   ``limit`` is reached, or throughput stops growing: the best of the last ``gain_steps`` (2)
   levels adds less than ``min_gain`` (5%) to the best before them (Model Analyzer's stop
   rule for its concurrency sweeps, which gives up after a few levels that gain less than 5%).
2. **Bisection** between the last level that held every bound and the first that broke one,
   until they are ``resolution`` apart (1 for concurrency, 5% of the load for a rate).

``load`` is the highest level that held every bound and the capacity the throughput
(inferences/s) measured there; the knee is the lowest level whose throughput is within
``min_gain`` of the best measured within the bounds (beyond it, more load only queues).

**Capacity by goodput** (DistServe's definition, ``capacity(..., attainment=0.9,
slo={...})``): the bound ``min_slo_attainment`` limits the search like a latency bound, so
the answer is the highest load at which at least that share of requests meets every
per-request SLO (TTFT, TPOT, end-to-end; failed requests miss them). A level holds when the
**point estimate** of its attainment reaches the target, as every SLA bound and every
latency bound of the search is decided; its 95% Wilson interval is shown beside it, and a
capacity level whose interval straddles the target is noted as marginal. The interval's
lower bound would make the answer depend on how many requests a level happened to hold
(short levels, lower capacity) rather than on the server, and would not match the
``min_slo_attainment`` check that the same record then meets.

Over ``request_rate`` each level is an open loop whose latency counts from the *scheduled*
send time (see ``load/open_loop.py``): when the server falls behind, its queue shows in the
latency of the very level that caused it, so the capacity cannot be inflated by a client
that sends late (perf_analyzer times from the actual send, so a client that falls behind
hides the queue from its ``--latency-threshold`` search).

Pure with respect to the server: the caller's ``measure`` does the measuring, so the search
is the same for a plain test, each arm of an A/B comparison and each candidate of a
configuration search.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pytest_triton_perf import metrics, sla
from pytest_triton_perf.errors import ArgumentError
from pytest_triton_perf.measure.result import PerfResult
from pytest_triton_perf.numbers import fmt

if TYPE_CHECKING:  # the engine pulls in the protocol clients: not at import time
    from pytest_triton_perf.measure.engine import MeasureSettings

Level = Mapping[str, Any]

#: The load axes a capacity is searched over.
AXES = ("concurrency", "request_rate")
#: SLA keys that limit a capacity: the latency bounds and the error-rate bound. Throughput
#: and memory bounds are not properties of a load level's latency (memory is checked on the
#: result at capacity like any measurement).
LATENCY_KEYS = tuple(k for k, m in metrics.BY_SLA_KEY.items() if m.unit == "ms")
#: The bound of a capacity by goodput (``attainment=``): the share of requests that meet
#: every per-request SLO of ``slo=``.
ATTAINMENT_KEY = "min_slo_attainment"
#: The bounds a search can be searched under (at least one of them is needed).
SEARCH_KEYS = (*LATENCY_KEYS, ATTAINMENT_KEY)
LIMITING_KEYS = (*SEARCH_KEYS, "max_error_rate")
#: Default highest load tried.
DEFAULT_LIMIT = {"concurrency": 1024.0, "request_rate": 1_000_000.0}
#: Growth factor per step, and the stop rule on throughput gains.
GROWTH = 2.0
MIN_GAIN = 0.05
GAIN_STEPS = 2
#: Relative resolution of a rate bisection (concurrency bisects to 1).
RATE_RESOLUTION = 0.05
#: Upper bound on measured levels, whatever the arguments.
MAX_STEPS = 40
#: Warm-up of the levels after the first: the server is warm by then, and the queue of the
#: new level settles within it.
LATER_WARMUP_S = 0.5


def level_settings(settings: MeasureSettings, index: int) -> MeasureSettings:
    """The settings of a search's level number ``index`` (0 first): after the first, the
    warm-up is at most :data:`LATER_WARMUP_S`."""
    if index == 0:
        return settings
    return dataclasses.replace(settings, warmup_s=min(settings.warmup_s, LATER_WARMUP_S))


def latency_bounds(bounds: Mapping[str, float]) -> dict[str, float]:
    """The bounds that limit a capacity: latency keys, the SLO attainment of a capacity by
    goodput, and ``max_error_rate`` (0 unless given)."""
    out = {k: float(v) for k, v in bounds.items() if k in SEARCH_KEYS}
    out["max_error_rate"] = float(bounds.get("max_error_rate", 0.0))
    return out


def bound_metric(key: str) -> str:
    """The figure a limiting bound bounds: ``p99_ms`` -> ``p99_ms``, ``max_error_rate`` ->
    ``error_rate``, ``min_slo_attainment`` -> ``slo_attainment``."""
    return sla.BOUNDS[key].metric


def breaches(result: PerfResult, bounds: Mapping[str, float]) -> tuple[str, ...]:
    """The limiting bounds ``result`` breaks, as text starting with the bound's key
    (``"p99_ms 43.1 > 30"``, ``"min_slo_attainment 0.84 < 0.9 (95% interval 0.77-0.89;
    e2e_ms <= 60 missed by 16.0% of 120 requests)"``); empty: it holds. TTFT and ITL bound
    streaming models only."""
    figures = result.summary()
    limits = sla.applicable(latency_bounds(bounds), result, figures)
    return tuple(_breach_text(b, result) for b in sla.breaches(figures, limits))


def _breach_text(breach: sla.Breach, result: PerfResult) -> str:
    if breach.key == ATTAINMENT_KEY:
        slo = result.slo
        if slo is None:
            return f"{breach} (no per-request SLOs: give slo=...)"
        if breach.value is None:
            return f"{breach.key} unavailable (no request completed)"
        most = slo.most_missed().split(", ")[0]
        return f"{breach} ({attainment_text(result)}; {most})"
    return f"{breach} (no request succeeded)" if breach.value is None else str(breach)


def attainment_text(result: PerfResult) -> str:
    """``95% interval 0.77-0.89`` of a result's SLO attainment (``-`` without one)."""
    ci = result.slo_attainment_interval
    return f"95% interval {ci[0]:.2f}-{ci[1]:.2f}" if ci else "-"


def goodput_bounds(
    bounds: Mapping[str, float],
    *,
    attainment: Any = None,
    slo: Mapping[str, Any] | None = None,
    model: str = "",
) -> dict[str, float]:
    """``bounds`` with ``attainment`` (a capacity by goodput) as ``min_slo_attainment``, which
    it overrides; ArgumentError for an attainment outside (0, 1], or for an attainment (given
    here or by the marker's ``min_slo_attainment``) without per-request SLOs to attain.

    Both load axes are accepted: over ``request_rate`` this is DistServe's capacity (the
    highest rate at which the share holds, open loop); over ``concurrency`` the highest
    number of requests in flight at which it holds, as a closed-loop sweep of GenAI-Perf or
    AIPerf would find it."""
    out = dict(bounds)
    source = "the sla marker's min_slo_attainment"
    if attainment is not None:
        ok = isinstance(attainment, (int, float)) and not isinstance(attainment, bool)
        if not ok or not 0 < float(attainment) <= 1:
            raise ArgumentError(
                f"capacity(attainment={attainment!r}): a share of requests in (0, 1] is "
                f"accepted, e.g. attainment=0.9: at least 90% of requests meet every SLO"
            )
        out[ATTAINMENT_KEY] = float(attainment)
        source = f"attainment={attainment!r}"
    if ATTAINMENT_KEY in out and not slo:
        if attainment is None:
            source += f"={out[ATTAINMENT_KEY]:g}"
        who = f"capacity of model '{model}'" if model else "capacity"
        raise ArgumentError(
            f"{who}: {source} is the share of requests that meet the "
            f"per-request SLOs, but no SLOs were given: add slo={{'ttft_ms': 200, 'tpot_ms': "
            f"50, 'e2e_ms': 2000}} (any of ttft_ms, tpot_ms, e2e_ms; a streaming model)"
        )
    return out


@dataclass(frozen=True)
class CapacityStep:
    """One measured load level of a capacity search."""

    load: float
    phase: str  # "probe" (rate search: the closed-loop throughput it starts from), "grow", "bisect"
    result: PerfResult
    breached: tuple[str, ...]

    @property
    def passed(self) -> bool:
        """Whether every limiting bound held at this level."""
        return not self.breached

    @property
    def throughput(self) -> float:
        """Inferences per second measured at this level."""
        return self.result.throughput

    def to_dict(self) -> dict[str, Any]:
        """One row of the step table."""
        figures = self.result.summary()
        return {
            "load": self.load,
            "phase": self.phase,
            "throughput": self.throughput,
            **{k: figures[k] for k in ("p50_ms", "p90_ms", "p95_ms", "p99_ms", "avg_ms")},
            "error_rate": self.result.error_rate,
            "passed": self.passed,
            "breached": list(self.breached),
            **self._slo(),
        }

    def _slo(self) -> dict[str, Any]:
        """The level's SLO attainment, its 95% interval and goodput (with ``slo=`` only)."""
        r = self.result
        if r.slo is None:
            return {}
        ci = r.slo_attainment_interval
        return {
            "slo_attainment": r.slo_attainment,
            "slo_attainment_interval": list(ci) if ci else None,
            "goodput": r.goodput,
        }


@dataclass(frozen=True)
class CapacityResult:
    """What :func:`find_capacity` found. ``capacity`` is None when even the first level broke
    a bound (``limited_by`` then names it)."""

    model: str
    over: str
    bounds: dict[str, float]
    capacity: float | None
    load: float | None
    steps: tuple[CapacityStep, ...]
    limited_by: str  # a bound key, "plateau" (throughput stopped growing) or "limit"
    knee: float | None
    result: PerfResult | None
    next_load: float | None
    duration_s: float
    notes: tuple[str, ...] = field(default=())

    @property
    def unit(self) -> str:
        """The load axis' unit word: ``concurrency`` or ``requests/s``."""
        return "concurrency" if self.over == "concurrency" else "requests/s"

    def describe(self) -> str:
        """One line: ``capacity 98.2 infer/s at concurrency 4 (limited by p99_ms <= 30)``."""
        if self.capacity is None:
            first = self.steps[0] if self.steps else None
            why = ", ".join(first.breached) if first else "nothing measured"
            return (
                f"no capacity within the bounds: the first level ({self.over} "
                f"{_load_text(first.load if first else 0, self.over)}) already breaks {why}"
            )
        if self.limited_by in self.bounds:
            op = "<=" if sla.BOUNDS[self.limited_by].upper else ">="
            why = f"limited by {self.limited_by} {op} {fmt(self.bounds[self.limited_by])}"
        elif self.limited_by == "plateau":
            why = "throughput stopped growing"
        else:
            why = f"the search's limit {_load_text(self.load or 0, self.over)} was reached"
        knee = f"; knee at {_load_text(self.knee, self.over)}" if self.knee is not None else ""
        assert self.load is not None
        good = ""
        if self.result is not None and self.result.slo is not None:
            good = (
                f", SLO attainment {fmt(self.result.slo_attainment)} "
                f"({attainment_text(self.result)}), goodput {fmt(self.result.goodput)} "
                f"requests/s"
            )
        return (
            f"capacity {fmt(self.capacity)} infer/s at {self.over} "
            f"{_load_text(self.load, self.over)}{good} ({why}{knee}; {len(self.steps)} "
            f"levels in {self.duration_s:.1f} s)"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping (what reports get under ``record.analysis["capacity"]``)."""
        return {
            "kind": "capacity",
            "model": self.model,
            "over": self.over,
            "bounds": dict(self.bounds),
            "capacity": self.capacity,
            "load": self.load,
            "limited_by": self.limited_by,
            "knee": self.knee,
            "next_load": self.next_load,
            "duration_s": self.duration_s,
            "notes": list(self.notes),
            "steps": [s.to_dict() for s in self.steps],
        }

    def step_table(self) -> str:
        """The steps as a plain text table."""
        keys = [k for k in SEARCH_KEYS if k in self.bounds]
        head = f"{self.over:>14} {'phase':>6} {'infer/s':>9} " + " ".join(f"{k:>9}" for k in keys)
        if ATTAINMENT_KEY in self.bounds:
            head = head.replace(f"{ATTAINMENT_KEY:>9}", f"{'attained':>9}")
        lines = [head]
        for s in self.steps:
            figures = s.result.summary()
            cells = " ".join(f"{fmt(figures[metrics.BY_SLA_KEY[k].name]):>9}" for k in keys)
            verdict = "ok" if s.passed else "breaks " + ", ".join(s.breached)
            lines.append(
                f"{_load_text(s.load, self.over):>14} {s.phase:>6} {fmt(s.throughput):>9} "
                f"{cells}  {verdict}"
            )
        return "\n".join(lines)


def _load_text(load: float, over: str) -> str:
    return str(int(load)) if over == "concurrency" else f"{load:g}/s"


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
) -> CapacityResult:
    """Search the highest load within ``bounds`` (SLA keys; the latency bounds and
    ``max_error_rate`` limit it). ``measure({"concurrency": 4})`` or
    ``measure({"request_rate": 120.0})`` measures one level. See the module's docstring.

    A ``start`` above the capacity is not fatal: the search halves the load until a level
    holds, then bisects. ``then`` is the level tried right after ``start`` instead of
    ``start * growth``: a search that knows a bracket already (a configuration search's
    longer rung starting from a shorter rung's answer) measures its two ends first."""
    if over not in AXES:
        raise ArgumentError(
            f"capacity(over={over!r}): 'concurrency' (closed loop) or 'request_rate' (open "
            f"loop) is accepted"
        )
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
    steps: list[CapacityStep] = []
    notes: list[str] = []

    def run(load: float, phase: str, axis: str = over) -> CapacityStep:
        value: float = int(load) if axis == "concurrency" else load
        result = measure({axis: value})
        step = CapacityStep(float(value), phase, result, breaches(result, limits))
        steps.append(step)
        return step

    if first is None:
        if integer:
            first = 1.0
        else:
            # A serial client's throughput is a rate the model serves with no queue; an
            # open loop at half of it starts well inside the bounds.
            probe = run(1, "probe", "concurrency")
            first = max(probe.throughput * 0.5, 1e-3)
            notes.append(
                f"started at half the closed-loop throughput at concurrency 1 "
                f"({fmt(probe.throughput)} infer/s)"
            )
        first = min(first, top)

    good: CapacityStep | None = None
    bad: CapacityStep | None = None
    limited_by = ""
    load = first
    grown: list[float] = []
    bottom = 1.0 if integer else first / growth**6
    following = _number("then", then, integer=integer, minimum=1 if integer else 1e-3)
    while len(steps) < MAX_STEPS:
        step = run(load, "grow")
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
            limited_by = "plateau"
            break
        if load >= top:
            limited_by = "limit"
            break
        if bad is not None:
            break  # descended: the level above this one broke a bound already
        if following is not None and following > load:
            load, following = min(top, following), None
            continue
        load = min(top, math.ceil(load * growth) if integer else load * growth)

    if good is not None and bad is not None:
        lo, hi = good.load, bad.load
        while len(steps) < MAX_STEPS:
            if integer:
                if hi - lo <= (step_res or 1):
                    break
                mid = float((int(lo) + int(hi)) // 2)
            else:
                if hi / lo <= 1 + (step_res / lo if step_res else RATE_RESOLUTION):
                    break
                mid = math.sqrt(lo * hi)
            step = run(mid, "bisect")
            if step.passed:
                lo = mid
            else:
                hi, bad = mid, step
        limited_by = _limiting_key(bad, limits)
    elif bad is not None:
        limited_by = _limiting_key(bad, limits)
    if not limited_by:
        limited_by = "limit"  # MAX_STEPS reached while growing
        notes.append(f"stopped after {MAX_STEPS} levels")

    passing = [s for s in steps if s.passed and s.phase != "probe"]
    if not passing:
        return CapacityResult(
            model, over, limits, None, None, tuple(steps), limited_by, None, None,
            bad.load if bad else None, time.perf_counter() - started, tuple(notes),
        )  # fmt: skip
    # The highest level that held every bound; the knee, the lowest that reaches (within
    # min_gain) the best throughput measured within the bounds.
    best = max(passing, key=lambda s: s.load)
    peak = max(s.throughput for s in passing)
    knee = min(s.load for s in passing if s.throughput >= (1 - min_gain) * peak)
    if best.result.client_bound:
        # The design's rule: never report the client's limit as the server's.
        notes.append(
            f"the load generator was saturated at {over} {_load_text(best.load, over)}: the "
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


def _limiting_key(step: CapacityStep | None, limits: Mapping[str, float]) -> str:
    """The bound key a breaking step broke first (in the order of ``limits``)."""
    if step is None:
        return ""
    for key in limits:
        if any(b.startswith(f"{key} ") for b in step.breached):
            return key
    return ""
