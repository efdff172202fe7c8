"""What the gate pipeline measures: one class per capability, each measuring its models
with no reference (:meth:`measure`) and against A/B mode's reference copies
(:meth:`measure_ab`). The engine is given to them as a function, so they run the same for
the fixture, the YAML items and the benchmarks."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pytest_triton_perf.gate.context import Measured
from pytest_triton_perf.measure.result import PerfResult

if TYPE_CHECKING:
    from pytest_triton_perf.capacity import CapacityResult
    from pytest_triton_perf.colocation import GroupOutcome
    from pytest_triton_perf.gate.strategies import Arms
    from pytest_triton_perf.measure.engine import MeasureSettings
    from pytest_triton_perf.measure.ramp import RampPlan, RampRun

#: The engine bound to a server and a workload: ``run(name, settings=...)``.
Runner = Callable[..., PerfResult]


@dataclass
class Measurement:
    """One measurement of ``model`` at one load level (``run`` carries the workload)."""

    model: str
    run: Runner
    settings: MeasureSettings
    comparable: bool = True

    @property
    def models(self) -> tuple[str, ...]:
        return (self.model,)

    def measure(self) -> list[Measured]:
        return [Measured(self.run(self.model, settings=self.settings))]

    def measure_ab(self, arms: Arms) -> list[Measured]:
        from pytest_triton_perf.baseline.ab import run_ab

        reference, candidate, _ = arms.names[self.model]
        outcome = run_ab(
            self.run,
            reference=reference,
            candidate=candidate,
            plan=arms.plan,
            gate=arms.gate,
            model=self.model,
            refresh=arms.refresh(self.model),
            offsets=arms.offsets.get(self.model),
        )
        return [
            Measured(
                outcome.candidate,
                "ab",
                reference=outcome.reference,
                reference_note=arms.note(self.model),
                comparisons=outcome.comparisons,
                ab_design=outcome.info(),
            )
        ]


@dataclass
class Capacity:
    """A capacity search of ``model``: ``search(name)`` searches one served name,
    ``settle(found)`` gives the record of a search (the level it settled on),
    ``measure_level(name, level, settings=...)`` measures one arm at one level.
    ``found`` holds the search behind the record once measured."""

    model: str
    search: Callable[[str], CapacityResult]
    settle: Callable[[CapacityResult], PerfResult]
    measure_level: Callable[..., PerfResult]
    comparable: bool = True
    found: CapacityResult | None = field(default=None, init=False)

    @property
    def models(self) -> tuple[str, ...]:
        return (self.model,)

    def measure(self) -> list[Measured]:
        """Search: the record is the level it settled on."""
        self.found = self.search(self.model)
        m = Measured(self.settle(self.found))
        m.analysis = {"capacity": self.found.to_dict()}
        return [m]

    def measure_ab(self, arms: Arms) -> list[Measured]:
        """Search once on the reference, compare both arms at its load and one level up
        (``baseline/capacity_ab.py``)."""
        from pytest_triton_perf.baseline.capacity_ab import compare_capacity

        reference, candidate, _ = arms.names[self.model]
        outcome = compare_capacity(
            self.measure_level,
            self.search,
            reference=reference,
            candidate=candidate,
            model=self.model,
            plan=arms.plan,
            gate=arms.gate,
            refresh=arms.refresh(self.model),
        )
        note = arms.note(self.model)
        if outcome is None:
            measured = self.measure()
            measured[0].mode = "ab"
            measured[
                0
            ].reference_note = (
                f"the reference has no capacity within the bounds: nothing to compare ({note})"
            )
            return measured
        self.found = outcome.search
        m = Measured(
            outcome.candidate,
            "ab",
            reference=outcome.reference,
            reference_note=note + "; capacity searched on the reference, both arms "
            "compared at its load and one level up",
            comparisons=outcome.comparisons,
            ab_design=outcome.info(),
        )
        m.analysis = {"capacity": outcome.search.to_dict()}
        return [m]


@dataclass
class Together:
    """Several models measured at the same time (``measure_together``): ``run(group,
    settings)`` measures one group; ``rounds`` the interference rounds (None: none),
    ``ab_rounds`` the pairs of the reference and candidate groups in A/B mode."""

    loads: Mapping[str, Mapping[str, Any]]
    run: Callable[[Mapping[str, Mapping[str, Any]], MeasureSettings], dict[str, PerfResult]]
    settings: MeasureSettings
    block_s: float
    rounds: int | None
    ab_rounds: int
    interference: bool
    comparable: bool = True
    outcome: GroupOutcome | None = field(default=None, init=False)

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(self.loads)

    def _full(self) -> GroupOutcome:
        from pytest_triton_perf import colocation

        return colocation.measure_together(
            self.run,
            self.loads,
            self.settings,
            interference_rounds=self.rounds if self.interference else None,
            block_s=self.block_s,
        )

    def measure(self) -> list[Measured]:
        self.outcome = outcome = self._full()
        measured = [Measured(outcome.results[m]) for m in self.loads]
        self._analysis(measured)
        return measured

    def measure_ab(self, arms: Arms) -> list[Measured]:
        """The reference group and the candidate group alternated in paired rounds."""
        from pytest_triton_perf import colocation

        n = self.ab_rounds
        self.outcome = outcome = colocation.measure_together_ab(
            self.run,
            self.loads,
            self.settings,
            arms={m: (a[0], a[1]) for m, a in arms.names.items()},
            rounds=n + n % 2,  # whole quads: half the pairs with the candidate first
            interference=self.interference,
            block_s=self.block_s,
            gate=arms.gate,
        )
        assert outcome.references is not None and outcome.comparisons is not None
        origin = arms.references.origin
        setup = "; ".join(f"'{a[0]}' = '{m}' from {origin}" for m, a in arms.names.items())
        design = {
            "method": "paired, fixed design (group)",
            "pairs": outcome.rounds,
            "elapsed_s": round(outcome.elapsed_s, 2),
            "stopped": "fixed",
            "confirmed": False,
        }
        measured = [
            Measured(
                outcome.results[m],
                "ab",
                reference=outcome.references[m],
                reference_note=f"{setup}; the reference group and the candidate group alternated",
                comparisons=outcome.comparisons[m],
                ab_design=design,
            )
            for m in self.loads
        ]
        self._analysis(measured)
        return measured

    def _analysis(self, measured: list[Measured]) -> None:
        """The group's one record carries the group's analysis."""
        assert self.outcome is not None
        block_s = self.block_s if self.outcome.rounds else None
        measured[0].analysis = {"group": self.outcome.analysis(block_s)}


@dataclass
class Recorded:
    """A result measured elsewhere (a footprint's record, a configuration search's best
    candidate) that is recorded and checked against the SLA but not compared with a
    baseline: its ``analysis`` rides along."""

    model: str
    result: PerfResult
    analysis: dict[str, Any] = field(default_factory=dict)
    #: The machine's load over the run that produced ``result`` (``HostLoad.finish()``).
    host_load: dict[str, float | None] | None = None
    comparable: bool = False

    @property
    def models(self) -> tuple[str, ...]:
        return (self.model,)

    def measure(self) -> list[Measured]:
        return [Measured(self.result, host_load=self.host_load, analysis=dict(self.analysis))]

    def measure_ab(self, arms: Arms) -> list[Measured]:
        return self.measure()


def capacity_subject(
    engine: Callable[..., PerfResult],
    model: str,
    limits: Mapping[str, float],
    settings: MeasureSettings,
    *,
    full_windows: int | None,
    ramp_engine: Callable[..., RampRun] | None = None,
    **search: Any,
) -> Capacity:
    """The capacity search of ``model`` as a subject: ``engine(name, settings=..., **level)``
    measures one served name at one level (the workload bound in), ``ramp_engine(name,
    plan, breaks, settings=...)`` runs a rate ramp on it (the ramp method; None: levels
    only), ``limits`` the bounds, ``search`` :func:`find_capacity`'s ``over``, ``start``,
    ``limit``, ``resolution``, ``method``. With ``full_windows`` (comparing or saving) the
    record is measured again with that many windows at least."""
    from pytest_triton_perf.capacity import find_capacity, level_settings

    # The server is warm after the first level: later levels only let the queue settle.
    later = level_settings(settings, 1)
    full = later.with_windows_at_least(full_windows) if full_windows is not None else None

    def searched(name: str) -> CapacityResult:
        calls = [0]

        def next_settings() -> MeasureSettings:
            calls[0] += 1
            return level_settings(settings, calls[0] - 1)

        def run(level: Mapping[str, Any]) -> PerfResult:
            return engine(name, settings=next_settings(), **level)

        def ramp(plan: RampPlan, breaks: Callable[[PerfResult], bool]) -> RampRun:
            assert ramp_engine is not None
            return ramp_engine(name, plan, breaks, settings=next_settings())

        return find_capacity(run, limits, model=model, ramp=ramp if ramp_engine else None, **search)

    def measure_level(name: str, level: Mapping[str, Any], **kwargs: Any) -> PerfResult:
        return engine(name, **level, **kwargs)

    return Capacity(
        model,
        searched,
        lambda found: settle_capacity(found, measure=engine, model=model, full=full),
        measure_level,
    )


def settle_capacity(
    found: CapacityResult,
    *,
    measure: Callable[..., PerfResult],
    model: str,
    full: MeasureSettings | None,
) -> PerfResult:
    """The record of a capacity search: the level it settled on. With ``full`` (comparing
    or saving), that level is measured again with the comparison's windows (the search's
    own levels are short); should it break a bound now, the next passing level below is
    taken. With no capacity at all, the first level, whose breach fails the test."""
    from pytest_triton_perf.capacity import FULL_PHASES, breaches

    if found.result is None or found.capacity is None:
        return found.levels[-1].result.as_capacity(0.0)
    if full is None:
        return found.result.as_capacity(found.capacity)
    passing = sorted({s.load for s in found.steps if s.passed and s.phase in FULL_PHASES})
    candidates = [x for x in reversed(passing) if x <= (found.load or 0)][:2]
    result = found.result
    for load in candidates:
        level: dict[str, Any] = {found.over: int(load) if found.over == "concurrency" else load}
        result = measure(model, settings=full, **level)
        if not breaches(result, found.bounds):
            break
    return result.as_capacity(result.throughput)
