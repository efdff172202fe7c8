"""The measurements of the predictive strategy (``search.predictive``): a probe at low load
that feeds the queueing model, a verification at the predicted level, and the capacity
search at full length where the two disagree."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pytest_triton_perf.capacity import (
    CapacityResult,
    CapacityStep,
    find_capacity,
    latency_bounds,
    level_settings,
)
from pytest_triton_perf.capacity import breaches as level_breaches
from pytest_triton_perf.errors import ServerDiedError, TritonPerfError
from pytest_triton_perf.numbers import fmt
from pytest_triton_perf.search import queueing
from pytest_triton_perf.search.candidates import Arm, Measurement, capacity_measurement, figures_of
from pytest_triton_perf.search.config import batch_limit, instance_count
from pytest_triton_perf.search.loader import Loader
from pytest_triton_perf.search.objective import SHORT_TOLERANCE, breaches
from pytest_triton_perf.search.predictive import TOLERANCE, Steps

if TYPE_CHECKING:
    from pytest_triton_perf.measure.plan import MeasureSettings
    from pytest_triton_perf.measure.result import PerfResult

#: Rungs of the predictive strategy, as a candidate's ``rung`` reports them.
PROBE_RUNG, VERIFY_RUNG, FALLBACK_RUNG = 0, 1, 2


def unpredictable(objective: str, over: str, bounds: Mapping[str, float]) -> str | None:
    """Why the queueing model cannot answer this search (then it runs by successive
    halving), or None."""
    if objective != "capacity":
        return f"the objective {objective} is measured at the load given, not predicted"
    if over != "concurrency":
        return "the model predicts a capacity over concurrency (closed loop), not request_rate"
    odd = [k for k in latency_bounds(bounds) if k not in queueing.PREDICTABLE]
    if odd:
        return f"the model does not predict {', '.join(odd)}"
    return None


@dataclass
class Prober:
    """The runner's side of :class:`search.predictive.Steps`: loads, measures, unloads."""

    bounds: dict[str, float]  # every constraint
    full: MeasureSettings
    short: MeasureSettings
    measure: Callable[..., PerfResult]  # (name, settings=, concurrency=, **kwargs)
    kwargs: dict[str, Any]
    limit: float | None
    loader: Loader
    notify: Callable[[str], None]
    alone: bool  # verify each candidate with no other loaded (memory is a constraint)
    arms: Sequence[Arm] = ()
    loaded_all: bool = False
    first_check: Callable[[Measurement], None] = field(default=lambda m: None)

    def steps(self) -> Steps:
        """The callables the flow takes."""
        return Steps(self.probe, self.verify, self.fallback, self.release)

    # -- loading -----------------------------------------------------------------------

    def _ensure(self, arm: Arm) -> bool:
        """``arm`` loaded (alone, where memory is a constraint); False: it failed to load."""
        if not self.loaded_all:
            self.loaded_all = True
            for a, why in self.loader.load_all(self.arms).items():
                if why is not None:
                    self.loader.failed(next(x for x in self.arms if x.name == a), why, self.notify)
        if arm.status == "failed":
            return False
        if self.alone:
            others = [n for n in self.loader.variants.loaded if n != arm.name]
            self.loader.unload(others)
        if not self.loader.loaded(arm.name):
            why = self.loader.load(arm)
            if why is not None:
                self.loader.failed(arm, why, self.notify)
                return False
        return True

    def release(self, arms: Sequence[Arm]) -> None:
        """Unload ``arms`` in the background."""
        self.loader.unload([a.name for a in arms if self.loader.loaded(a.name)], wait=False)

    def _level(self, arm: Arm, settings: MeasureSettings, concurrency: int) -> PerfResult | None:
        """One level of ``arm``; None (the arm marked failed) when the measurement fails."""
        try:
            return self.measure(arm.name, settings=settings, concurrency=concurrency, **self.kwargs)
        except ServerDiedError:
            raise
        except TritonPerfError as e:
            if arm.committed:
                raise
            arm.status = "failed"
            arm.note = f"measurement failed: {e}"
            self.notify(f"  {arm.name}: {arm.note}")
            return None

    # -- the steps -----------------------------------------------------------------------

    def probe(self, arm: Arm) -> float | None:
        """Measure ``arm`` briefly at about one request per instance (and one full batch per
        instance with dynamic batching); predict its capacity. ``math.inf``: the server
        gave no statistics to predict from (the candidate is then searched the long way)."""
        if not self._ensure(arm):
            return None
        settings = dataclasses.replace(self.short, max_windows=self.short.windows)
        size = int(self.kwargs.get("batch_size") or 1)
        instances, per_execution = instance_count(arm.config), batch_limit(arm.config, size)
        top = int(self.limit) if self.limit is not None else None
        low = min(instances, top) if top else instances
        result = self._level(arm, settings, low)
        if result is None:
            return None
        batched = None
        if per_execution > 1 and (top is None or top > low):
            high = min(instances * per_execution, top) if top else instances * per_execution
            second = self._level(arm, level_settings(settings, 1), high)
            if second is None:
                return None
            if second.server is not None and second.server.executions > 0:
                batched = (
                    second.server.requests / second.server.executions,
                    _service_ms(second),
                )
        figures = figures_of(result)
        found = breaches(figures, self.bounds, SHORT_TOLERANCE)
        if result.server is None or result.latency_ms is None or result.throughput <= 0:
            arm.measurements.append(Measurement(PROBE_RUNG, False, None, figures, found, result))
            self.first_check(arm.measurements[-1])
            self.notify(f"  {arm.name}: no server statistics to predict from")
            return math.inf
        model = queueing.profile(
            instances=instances,
            batch_limit=per_execution,
            concurrency=low,
            throughput_rps=result.throughput / size,
            mean_ms=result.latency_ms.avg,
            p99_ms=result.latency_ms.p99,
            service_ms=_service_ms(result),
            queue_ms=result.server.queue_ms,
            batched=batched,
            inferences_per_request=size,
        )
        prediction = queueing.predict(model, latency_bounds(self.bounds), limit=self.limit)
        arm.prediction = prediction
        arm.measurements.append(
            Measurement(PROBE_RUNG, False, prediction.capacity, figures, found, result)
        )
        self.first_check(arm.measurements[-1])
        self.notify(f"  {arm.name}: {model.describe()}: {prediction.describe()}")
        return prediction.capacity

    def verify(self, arm: Arm) -> bool:
        """Measure ``arm`` at full length around its predicted knee: first where the
        prediction is checked (``queueing.Prediction.check``, with room below the bounds);
        should a bound break there (a p99 right at its bound breaks it half the time),
        once more below it (``Prediction.below``); else at the predicted load, and should
        that break a bound, half way between. The capacity is the throughput of the
        highest level that kept the bounds; returns whether it is within TOLERANCE of the
        model's throughput at that level."""
        prediction = arm.prediction
        check = prediction.check if prediction is not None else None
        if prediction is None or check is None or not self._ensure(arm):
            return False
        # The probe warmed the instances: the short warm-up of a search's later levels.
        settings = level_settings(dataclasses.replace(self.full, max_windows=self.full.windows), 1)
        limits = latency_bounds(self.bounds)
        began = time.perf_counter()
        steps: list[CapacityStep] = []
        texts: list[str] = []
        good: tuple[CapacityStep, float] | None = None  # the highest level that held

        def level(point: queueing.Point) -> CapacityStep | None:
            nonlocal good
            result = self._level(arm, settings, point.population)
            if result is None:
                return None
            step = CapacityStep(
                float(point.population), "verify", result, level_breaches(result, limits)
            )
            steps.append(step)
            error = queueing.relative_error(result.throughput, point.throughput)
            broke = "" if step.passed else ", breaks " + ", ".join(step.breached)
            texts.append(
                f"measured {fmt(result.throughput)} infer/s at concurrency {point.population} "
                f"({error:+.0%} on the model's {fmt(point.throughput)}{broke})"
            )
            if step.passed and (good is None or step.load > good[0].load):
                good = (step, error)
            return step

        first = level(check)
        if first is None:
            return False
        top = prediction.at_load
        if not first.passed:
            below = prediction.below()
            if below is not None and level(below) is None:
                return False
        elif top is not None and top.population > check.population:
            # The throughput may still grow up to the predicted load (batches fill).
            upper = level(top)
            if upper is None:
                return False
            if not upper.passed and top.population - check.population >= 2:
                middle = queueing.point(
                    prediction.profile, (top.population + check.population) // 2
                )
                if level(middle) is None:
                    return False
        found = good
        error = found[1] if found is not None else None
        arm.prediction_error = error
        arm.checked_at = int(found[0].load) if found is not None else check.population
        held = error is not None and abs(error) <= TOLERANCE
        arm.prediction_held = held
        text = "; ".join(texts)
        broken = [s for s in steps if not s.passed]
        above = [s for s in broken if found is None or s.load > found[0].load]
        cap = CapacityResult(
            model=arm.name,
            over="concurrency",
            bounds=limits,
            capacity=found[0].throughput if found else None,
            load=found[0].load if found else None,
            steps=tuple(steps),
            limited_by=above[0].breached[0].split()[0] if above else prediction.limited_by,
            knee=float(prediction.knee) if prediction.knee is not None else None,
            result=found[0].result if found else None,
            next_load=(
                min(s.load for s in above)
                if above
                else float(prediction.next_load)
                if prediction.next_load
                else None
            ),
            duration_s=time.perf_counter() - began,
            notes=(f"{prediction.describe()}; {text}",),
        )
        arm.measurements.append(capacity_measurement(cap, self.bounds, VERIFY_RUNG, True, 0.0))
        self.notify(f"  {arm.name}: {text}: {'verified' if held else 'disagrees'}")
        return held

    def fallback(self, arm: Arm) -> None:
        """Today's capacity search for ``arm`` at full length, from its predicted level."""
        if not self._ensure(arm):
            return
        # Start from the level checked: below it where it broke a bound (the bracket is
        # then measured first), else there.
        start: float | None = None
        then: float | None = None
        checked = arm.checked_at
        last = arm.last
        if checked is not None and last is not None and last.capacity is not None:
            if last.capacity.capacity is None:
                start = float(max(1, round(checked * 0.7)))
                then = float(checked - 1) if checked - 1 > start else None
            else:
                start = float(checked)
        if arm.prediction_held is False:
            arm.note = (
                f"measured {arm.prediction_error:+.0%} off its prediction (tolerance "
                f"{TOLERANCE:.0%}): capacity searched at full length"
            )
        settings = dataclasses.replace(self.full, max_windows=self.full.windows)
        levels = [1]  # the probe warmed the instances

        def level(load: Mapping[str, float]) -> PerfResult:
            use = level_settings(settings, levels[0])
            levels[0] += 1
            n = int(load["concurrency"])
            return self.measure(arm.name, settings=use, concurrency=n, **self.kwargs)

        try:
            cap = find_capacity(
                level,
                self.bounds,
                over="concurrency",
                start=start,
                limit=self.limit,
                model=arm.name,
                then=then,
            )
        except ServerDiedError:
            raise
        except TritonPerfError as e:
            if arm.committed:
                raise
            arm.status, arm.note = "failed", f"measurement failed: {e}"
            self.notify(f"  {arm.name}: {arm.note}")
            return
        arm.measurements.append(capacity_measurement(cap, self.bounds, FALLBACK_RUNG, True, 0.0))
        self.notify(f"  {arm.name}: full-length search: {cap.describe()}")


def _service_ms(result: PerfResult) -> float:
    """Triton's time per request in the model (compute input + infer + output; a batched
    request is charged its whole execution)."""
    s = result.server
    assert s is not None
    return s.compute_input_ms + s.compute_infer_ms + s.compute_output_ms
