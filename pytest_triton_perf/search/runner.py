"""``run_search``: load each candidate configuration beside the model, measure it, rank.

Each candidate is the model's own files with an edited configuration, loaded through
Triton's repository API as ``<model>__cfg<N>`` (a model variant, as the A/B references:
:class:`pytest_triton_perf.server.variants.Variants`), so a search runs the same on the
local, container and remote launchers. Halving and the grid load one candidate at a time,
measured and unloaded again before the next: candidates do not share the machine's memory
or cores, and memory figures are each candidate's own; racing (``search.race``) loads them
together and interleaves their measurements; predict loads them together for its probes.
The committed configuration is loaded as a copy too (``<model>__cfg0``), so that every arm
is set up alike.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from pytest_triton_perf import metrics
from pytest_triton_perf.baseline.key import gpu_facts
from pytest_triton_perf.capacity import AXES, check_method, find_capacity, level_settings
from pytest_triton_perf.errors import ArgumentError, ServerDiedError, TritonPerfError
from pytest_triton_perf.measure.engine import MeasureSettings, measure_ramp
from pytest_triton_perf.measure.engine import measure as engine_measure
from pytest_triton_perf.numbers import fmt
from pytest_triton_perf.search import strategy as strategies
from pytest_triton_perf.search.candidates import (
    Arm,
    Measurement,
    capacity_measurement,
    figures_of,
    plan,
)
from pytest_triton_perf.search.config import parse_config
from pytest_triton_perf.search.loader import Loader
from pytest_triton_perf.search.objective import (
    SHORT_TOLERANCE,
    breaches,
    capacity_keys,
    is_latency,
    objective_value,
    parse_objective,
    parse_sla,
)
from pytest_triton_perf.search.predictive import TOLERANCE, run_predictive
from pytest_triton_perf.search.probe import Prober, unpredictable
from pytest_triton_perf.search.race import Racer, run_race, unraceable
from pytest_triton_perf.search.result import Candidate, SearchResult
from pytest_triton_perf.search.space import parse_space
from pytest_triton_perf.search.strategy import rung0_settings, rung_settings
from pytest_triton_perf.server.variants import model_directory

if TYPE_CHECKING:
    from pytest_triton_perf.capacity import CapacityResult
    from pytest_triton_perf.measure.engine import Endpoints
    from pytest_triton_perf.measure.ramp import RampPlan, RampRun
    from pytest_triton_perf.measure.result import PerfResult

#: What answers a search that the queueing model cannot (and racing can).
FALLBACK = "race"
_NAMES = {"race": "racing", "halving": "successive halving"}
#: Bisection resolution of a capacity over concurrency at a short rung (full length: 1).
COARSE_CONCURRENCY = 2.0


class MeasureFn(Protocol):
    """How a search measures one load level of one candidate: ``measure(name,
    settings=..., concurrency=..., ...)``; the default is the engine's ``measure`` on the
    search's server."""

    def __call__(self, model: str, *, settings: MeasureSettings, **kwargs: Any) -> PerfResult:
        """Measure the model (candidate) ``model``."""
        ...


#: How a search runs a rate ramp on one candidate: ``ramp(name, plan, breaks,
#: settings=...)`` (the engine's ``measure_ramp`` on the search's server and workload).
RampFn = Callable[..., "RampRun"]


@dataclass
class _Search:
    """One search's arguments, validated, and the evaluation of one arm at one rung."""

    model: str
    objective: str
    bounds: dict[str, float]  # every constraint, max_error_rate=0 unless given
    full: MeasureSettings
    short: MeasureSettings
    measure: MeasureFn
    kwargs: dict[str, Any]  # the measurement's load, inputs, protocol
    over: str
    start: float | None
    limit: float | None
    loader: Loader
    notify: Callable[[str], None]
    method: str | None = None  # the capacity's method (None: its axis' default)
    ramp: RampFn | None = None  # runs a rate ramp (None: levels only)
    checked: bool = False  # whether the figures the search needs proved measurable

    def evaluate(self, arm: Arm, rung: int, final: bool) -> None:
        """Load ``arm``, measure it at ``rung``, unload it; a candidate that fails to load
        or to measure is marked failed and the search goes on."""
        try:
            why = self.loader.load(arm)
            if why is not None:
                self.loader.failed(arm, why, self.notify)
            measurement = self.measured(arm, rung, final) if why is None else None
        except BaseException:
            # Unload, but let nothing hide the error (or the interrupt) that got here.
            with contextlib.suppress(Exception):
                self.loader.unload({arm.name})
            raise
        self.loader.unload({arm.name})
        if measurement is not None:
            self.notify(measurement.line(arm, self.objective))

    def measured(
        self, arm: Arm, rung: int, final: bool, settings: MeasureSettings | None = None
    ) -> Measurement | None:
        """``arm`` (loaded) measured at ``rung`` (with ``settings``: the rung's by default),
        appended to its measurements; None (the arm marked failed) when the measurement
        fails. The committed configuration failing is an error: what fails for it fails
        for every candidate (the server's model control, the load)."""
        if settings is None:
            settings = self.full if final else rung_settings(self.short, self.full, rung)
        try:
            measurement = self._measure(arm, rung, final, settings)
        except ServerDiedError:
            raise
        except TritonPerfError as e:
            if arm.committed:
                raise
            # E.g. a max_batch_size below the batch size measured: this candidate only.
            arm.status = "failed"
            arm.note = f"measurement failed at rung {rung}: {e}"
            self.notify(f"  {arm.name}: {arm.note}")
            return None
        arm.measurements.append(measurement)
        self.check_once(measurement)
        return measurement

    def _measure(self, arm: Arm, rung: int, final: bool, settings: MeasureSettings) -> Measurement:
        tolerance = 0.0 if final else SHORT_TOLERANCE
        if self.objective != "capacity":
            result = self.measure(arm.name, settings=settings, **self.kwargs)
            figures = figures_of(result)
            return Measurement(
                rung,
                final,
                objective_value(self.objective, figures),
                figures,
                breaches(figures, self.bounds, tolerance),
                result,
            )

        levels = [0]
        # A search's levels are not extended for stability (the windows asked for, no
        # more): near the capacity every level is unstable, and extending each one would
        # cost a search more than it tells (the final rung ranks at full length anyway).
        settings = dataclasses.replace(settings, max_windows=settings.windows)

        def level(load: Mapping[str, float]) -> PerfResult:
            axis = {k: (int(v) if k == "concurrency" else float(v)) for k, v in load.items()}
            use = level_settings(settings, levels[0])
            levels[0] += 1
            return self.measure(arm.name, settings=use, **self.kwargs, **axis)

        def ramp(plan: RampPlan, breaks: Callable[[PerfResult], bool]) -> RampRun:
            assert self.ramp is not None
            use = level_settings(settings, levels[0])
            levels[0] += 1
            return self.ramp(arm.name, plan, breaks, settings=use)

        resolution = None if final or self.over != "concurrency" else COARSE_CONCURRENCY
        # A longer rung starts from the bracket the shorter one found (its capacity's load
        # and the first level above that broke a bound) instead of growing from 1 again;
        # without one, a capacity over a rate is found by the ramp (its method's default).
        start, then = self.start, None
        before = arm.last.capacity if arm.last is not None else None
        if before is not None and before.load is not None:
            start, then = before.load, before.next_load
            if self.limit is not None:
                start = min(start, self.limit)
                then = min(then, self.limit) if then is not None else None
        cap = find_capacity(
            level,
            self.bounds,
            over=self.over,
            start=start,
            limit=self.limit,
            resolution=resolution,
            model=arm.name,
            then=then,
            method=self.method if then is None else None,
            ramp=ramp if self.ramp is not None else None,
        )
        return self._capacity_measurement(cap, rung, final, tolerance)

    def _capacity_measurement(
        self, cap: CapacityResult, rung: int, final: bool, tolerance: float
    ) -> Measurement:
        return capacity_measurement(cap, self.bounds, rung, final, tolerance)

    def check_once(self, measurement: Measurement) -> None:
        """:meth:`_check_measurable` on the search's first measurement only."""
        if not self.checked:
            self._check_measurable(measurement)
            self.checked = True

    def _check_measurable(self, measurement: Measurement) -> None:
        """Raise ArgumentError when the objective or a constraint names a figure this
        server does not measure (GPU memory without a GPU or metrics)."""
        result = measurement.result
        needed = [self.objective] + [
            metrics.BY_SLA_KEY[k].name for k in self.bounds if not is_latency(k)
        ]
        for name in needed:
            if name.endswith("_memory_mb") and measurement.figures.get(name) is None:
                reason = result.unavailable_reason(name) if result is not None else None
                role = "objective" if name == self.objective else "constraint"
                raise ArgumentError(
                    f"search of model '{self.model}': the {role} {name} cannot be measured "
                    f"here: {reason or 'no source measured it'}."
                )


def _candidate(arm: Arm, rank: int | None) -> Candidate:
    last = arm.last
    figures = last.figures if last is not None else {}
    cap = last.capacity if last is not None else None
    sla_ok = last is not None and not last.breaches and arm.status != "failed"
    note = arm.note
    if last is not None and last.capacity is not None and arm.status != "failed":
        note = "; ".join(n for n in (note, last.capacity.describe()) if n)
    return Candidate(
        name=arm.name,
        values=dict(arm.values),
        config_pbtxt=arm.config_pbtxt,
        config_diff=arm.config_diff,
        committed=arm.committed,
        status=arm.status,  # type: ignore[arg-type]
        rank=rank,
        objective=last.objective if last is not None else None,
        capacity=cap.capacity if cap is not None else None,
        p99_ms=figures.get("p99_ms"),
        throughput=figures.get("throughput"),
        gpu_memory_mb=figures.get("gpu_memory_mb"),
        cpu_memory_mb=figures.get("cpu_memory_mb"),
        sla_ok=sla_ok,
        note=note,
        rung=last.rung if last is not None else -1,
        prediction=_prediction(arm),
        result=last.result if last is not None else None,
        capacity_result=cap,
    )


def _prediction(arm: Arm) -> dict[str, Any] | None:
    """The queueing model's prediction for ``arm`` beside what was measured, or None."""
    p = arm.prediction
    if p is None:
        return None
    return {
        "capacity": p.capacity,
        "load": p.load,
        "knee": p.knee,
        "limited_by": p.limited_by,
        "latency_ms": {k: p.latency(k) for k in ("avg_ms", "p99_ms")},
        "error": arm.prediction_error,
        "held": arm.prediction_held,
        "tolerance": TOLERANCE,
        "model": p.profile.describe(),
    }


def _cost(
    server: Any,
    wall_s: float,
    spent: Mapping[str, float],
    loader: Loader,
    candidates: Sequence[Candidate],
) -> dict[str, Any]:
    """What the search cost: its wall time; the server-seconds it held a server (one server
    for the whole search); GPU-seconds where the server uses GPUs (server-seconds times
    the GPUs it was given, or the host's), None where it has none; load levels measured,
    rate ramps run, seconds under load, model loads and seconds loading."""
    gpus = 0
    if any(c.gpu_memory_mb is not None for c in candidates):
        devices = getattr(server, "gpu_devices", None)
        found = gpu_facts(tuple(devices) if devices else None).get("gpu_count")
        gpus = int(found or 1)
    return {
        "wall_s": wall_s,
        "server_s": wall_s,
        "gpu_s": wall_s * gpus if gpus else None,
        "gpus": gpus,
        "levels": int(spent["levels"]),
        "ramps": int(spent["ramps"]),
        "measured_s": spent["measured_s"],
        "loads": loader.loads,
        "load_s": loader.load_s,
    }


def _number_or_none(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ArgumentError(
            f"search {name}={value!r}: a number >= 0 is accepted (0.15: the best may beat "
            f"the committed configuration by 15%)."
        )
    return float(value)


def _capacity_axis(
    model: str,
    bounds: Mapping[str, float],
    over: str | None,
    start: float | None,
    measure_kwargs: dict[str, Any],
) -> tuple[str, float | None]:
    """The load axis of a capacity objective and the level to start from; takes the load
    (``concurrency`` or ``request_rate``) out of ``measure_kwargs``: the search sets it."""
    if not any(is_latency(k) for k in bounds):
        raise ArgumentError(
            f"search of model '{model}' for capacity: no latency bound; a capacity is the "
            f"load sustained while latency bounds hold, so give one in sla, e.g. "
            f"sla={{'p99_ms': 30}}."
        )
    rate = measure_kwargs.get("request_rate")
    axis = over or ("request_rate" if rate is not None else "concurrency")
    if axis not in AXES:
        raise ArgumentError(f"search over={over!r}: 'concurrency' or 'request_rate' is accepted.")
    other = "request_rate" if axis == "concurrency" else "concurrency"
    if measure_kwargs.get(other) is not None:
        raise ArgumentError(
            f"search over={axis!r} with {other}={measure_kwargs[other]!r}: the capacity is "
            f"searched over one load; give {axis}=... (the level to start from) or start=..."
        )
    given = measure_kwargs.pop(axis, None)
    measure_kwargs.pop(other, None)
    return axis, start if start is not None else given


def run_search(
    server: Endpoints,
    model: str,
    space: Mapping[str, Any],
    *,
    objective: str = "capacity",
    sla: Mapping[str, Any] | None = None,
    strategy: str = "predict",
    settings: MeasureSettings | None = None,
    short_settings: MeasureSettings | None = None,
    model_repository: str | os.PathLike[str] | None = None,
    max_config_gap: float | None = None,
    over: str | None = None,
    start: float | None = None,
    limit: float | None = None,
    method: str | None = None,
    measure: MeasureFn | None = None,
    notify: Callable[[str], None] | None = None,
    **measure_kwargs: Any,
) -> SearchResult:
    """Search ``space`` (see ``search.space``) for the configuration of ``model`` that is
    best on ``objective`` within ``sla``; returns every candidate ranked.

    ``objective``: ``"capacity"`` (inferences/s within the SLA's latency bounds, searched
    over ``over``: concurrency, or request_rate when ``request_rate`` is given;
    ``start``/``limit`` bound that search, ``method`` is its method: ``"ramp"``, the
    default over a rate, finds each candidate's first capacity in one pass of a rising rate
    and one steady level, ``"search"`` by growth and bisection; a candidate measured again
    at a longer rung starts from the bracket it found), ``"throughput"``, ``"p99_ms"`` or
    ``"gpu_memory_mb"`` at the load ``measure_kwargs`` give (``concurrency``,
    ``request_rate``, ``batch_size``, ``protocol``, ``inputs``, ``shapes``, ... as the
    engine's ``measure`` takes them). Model Analyzer's names (``perf_throughput``,
    ``perf_latency_p99``, ``gpu_used_memory``) are accepted. ``sla``: SLA keys (Model
    Analyzer's names accepted) checked on every measurement. ``strategy``: ``"predict"``
    (probe, predict with a queueing model, verify at the predicted level: see
    ``search.predictive``; a capacity over concurrency only, else it runs as
    :data:`FALLBACK`), ``"race"`` (every candidate loaded, measured in interleaved
    rounds until the dominated are dropped, see ``search.race``; an objective at a given
    load without memory figures, else it runs as halving), ``"halving"`` (successive
    halving, see ``search.strategy``) or ``"grid"``.
    ``settings``: the full length of one measurement (``short_settings``: rung 0's,
    derived from it by default).
    ``model_repository``: where the model's files are, when the server's own model
    repositories are not at hand (a remote server). ``measure``: how one level is measured
    (default: the measurement engine). ``notify``: receives a progress line per step.

    Every candidate is unloaded before this returns, also on errors and interrupts. Raises
    ArgumentError (a ValueError) for a bad space, objective, SLA or argument, before
    anything is loaded.
    """
    started = time.perf_counter()
    say = notify or (lambda line: None)
    parsed_space = parse_space(space)
    goal = parse_objective(objective)
    bounds = parse_sla(sla)
    if strategy not in strategies.STRATEGIES:
        raise ArgumentError(
            f"search strategy={strategy!r}: one of {', '.join(strategies.STRATEGIES)} is "
            f"accepted (predict: a short probe and a queueing model, then one level at full "
            f"length; race: every candidate loaded, measured in interleaved rounds until the "
            f"dominated are dropped; halving: short measurements first; grid: every "
            f"candidate at full length)."
        )
    gap_limit = _number_or_none("max_config_gap", max_config_gap)
    if goal == "capacity":
        axis, first = _capacity_axis(model, bounds, over, start, measure_kwargs)
        check_method(method, axis)
    else:
        needs_capacity = [k for k in bounds if k in capacity_keys()]
        if needs_capacity:
            raise ArgumentError(
                f"search sla: {', '.join(needs_capacity)} bounds a capacity, which only the "
                f"'capacity' objective measures (objective is {goal!r})."
            )
        if over is not None or start is not None or limit is not None or method is not None:
            raise ArgumentError(
                f"search: over, start and limit bound a capacity search (method chooses how); "
                f"objective {goal!r} measures at the load given (concurrency=..., "
                f"request_rate=...)."
            )
        axis, first = "concurrency", None
    full = settings or MeasureSettings()
    short = short_settings or rung0_settings(full)
    constraints = {**metrics.default_bounds(), **bounds}

    src = model_directory(
        server,
        model,
        model_repository,
        who=f"search of model '{model}'",
        then=" (--model-repository) with the model's directory; each candidate is loaded "
        "from those files with its own configuration",
    )
    committed = parse_config(src / "config.pbtxt")
    candidates = plan(model, parsed_space, committed)
    arms = candidates.arms
    notes = []
    if strategy == "predict":
        why_not = unpredictable(goal, axis, constraints)
        if why_not is not None:
            strategy = FALLBACK if unraceable(goal, constraints) is None else "halving"
            notes.append(f"predict: {why_not}; searched by {_NAMES[strategy]}")
    if strategy == "race" and unraceable(goal, constraints) is not None:
        notes.append(f"race: {unraceable(goal, constraints)}; searched by successive halving")
        strategy = "halving"
    say(
        f"search of '{model}' ({goal}, {strategy}): {len(arms)} candidates "
        f"({len(arms) - 1} from the space, the committed configuration as {arms[0].name})"
        + (f"; {len(candidates.skipped)} combinations skipped" if candidates.skipped else "")
    )
    for values, why in candidates.skipped:
        say(f"  skipped {', '.join(f'{k}={v}' for k, v in values.items())}: {why}")

    spent = {"levels": 0.0, "ramps": 0.0, "measured_s": 0.0}
    measure_fn = measure

    def engine(model: str, *, settings: MeasureSettings, **kwargs: Any) -> PerfResult:
        began = time.perf_counter()
        try:
            if measure_fn is not None:
                return measure_fn(model, settings=settings, **kwargs)
            return engine_measure(server, model, settings=settings, **kwargs)
        finally:
            spent["levels"] += 1
            spent["measured_s"] += time.perf_counter() - began

    def ramp(model: str, plan: RampPlan, breaks: Any, *, settings: MeasureSettings) -> RampRun:
        began = time.perf_counter()
        try:
            return measure_ramp(server, model, plan, breaks, settings=settings, **measure_kwargs)
        finally:
            spent["ramps"] += 1
            spent["measured_s"] += time.perf_counter() - began

    loader = Loader(server, src, model)
    search = _Search(
        model=model,
        objective=goal,
        bounds=constraints,
        full=full,
        short=short,
        measure=engine,
        kwargs=dict(measure_kwargs),
        over=axis,
        start=first,
        limit=limit,
        loader=loader,
        notify=say,
        method=method,
        # A measuring function of the caller's has no ramp to go with it: levels only.
        ramp=ramp if measure_fn is None else None,
    )
    try:
        if strategy == "predict":
            prober = Prober(
                bounds=constraints,
                full=full,
                short=short,
                measure=engine,
                kwargs=dict(measure_kwargs),
                limit=limit,
                loader=loader,
                notify=say,
                alone=any(metrics.BY_SLA_KEY[k].name.endswith("_memory_mb") for k in bounds),
                arms=arms,
                first_check=search.check_once,
            )
            pruned = run_predictive(
                arms, prober.steps(), verify_committed=gap_limit is not None, notify=say
            )
        elif strategy == "race":
            racer = Racer(loader, search.measured, goal, short, full, say)
            why_not = racer.load_together(arms)
            if why_not is None:
                seed = random.SystemRandom().randrange(2**31)
                outcome = run_race(
                    arms, racer.steps(), goal, racer.budget(arms), seed=seed, notify=say
                )
                notes.append(outcome.describe())
                pruned = outcome.pruned
            else:
                notes.append(f"race: {why_not}; searched by successive halving instead")
                strategy = "halving"
        if strategy in ("halving", "grid"):
            pruned = strategies.run_strategy(strategy, arms, search.evaluate, goal, say)
        loader.settle()
    finally:
        loader.close()
    ranked = [_candidate(arm, r) for arm, r in strategies.rank(arms, goal)]
    finalists = [a for a, _ in strategies.rank(arms, goal) if a.status == "finalist"]
    tie = strategies.tie_break(finalists, goal)
    if tie is not None:
        say(f"  {tie.describe()}")
    if candidates.skipped:
        notes.append(
            f"{len(candidates.skipped)} combination(s) of the space cannot be valid "
            f"configurations and were skipped"
        )
    elapsed = time.perf_counter() - started
    result = SearchResult(
        model=model,
        objective=goal,
        strategy=strategy,
        space=parsed_space,
        sla=bounds,
        candidates=tuple(ranked),
        duration_s=elapsed,
        pruned=pruned,
        skipped=len(candidates.skipped),
        max_config_gap=gap_limit,
        notes=tuple(notes),
        tie=tie.describe() if tie is not None else None,
        cost=_cost(server, elapsed, spent, loader, ranked),
    )
    best = result.best
    say(
        f"search of '{model}' done in {result.duration_s:.1f} s: "
        + (
            f"best {best.name} ({best.describe()}), {goal} {fmt(best.objective)}"
            if best
            else "no candidate holds the SLA"
        )
        + (f", {result.gap:+.0%} on the committed one" if result.gap else "")
    )
    return result
