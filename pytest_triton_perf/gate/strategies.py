"""How a measurement is judged: no comparison, history (the stored accepted runs) or A/B
(a reference copy in the same server). Each strategy is one object that measures a
:class:`~pytest_triton_perf.gate.pipeline.Subject` and judges what it measured; the
pipeline picks one (:meth:`GatePipeline.mode`) and every capability goes through it."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from pytest_triton_perf.baseline import history
from pytest_triton_perf.baseline.compare import GateSettings, compare_results
from pytest_triton_perf.baseline.steps import name_regressed_step
from pytest_triton_perf.baseline.store import locked
from pytest_triton_perf.gate.context import GateContext, Measured, Mode
from pytest_triton_perf.verdicts import (
    NO_BASELINE,
    Comparison,
    latency_histogram,
    stream_histograms,
)

if TYPE_CHECKING:
    from pytest_triton_perf.baseline.ab import ABPlan, Refresh
    from pytest_triton_perf.baseline.epochs import Offset
    from pytest_triton_perf.baseline.reference import ReferenceModels

Judgement = tuple[list[Comparison], dict[str, Any]]


@dataclass(frozen=True)
class Arms:
    """A/B mode's arms of every model of a subject: ``{model: (reference, candidate,
    setup)}`` as :meth:`ReferenceModels.arms` names them, with the design and the rule."""

    names: dict[str, tuple[str, str, str]]
    references: ReferenceModels
    plan: ABPlan
    gate: GateSettings
    #: Each model's calibrated per-load offsets (``triton-perf calibrate``; empty: none).
    offsets: dict[str, dict[str, Offset]] = field(default_factory=dict)

    def note(self, model: str) -> str:
        """Where the model's reference comes from, for the reports."""
        reference, _, setup = self.names[model]
        return f"'{reference}' = '{model}' from {self.references.origin}; {setup}"

    def refresh(self, model: str) -> Refresh | None:
        """Loads both arms anew (fresh instances; ``refresh(candidate_first)``, which
        returns how and the names they are served under now): only where both arms are
        copies."""
        _, candidate, _ = self.names[model]
        if candidate == model:
            return None
        return self.references.refresher(model)


class Subject(Protocol):
    """What to measure: one capability's measurements (a plain measurement, a capacity
    search, models together, a footprint, a configuration search)."""

    @property
    def models(self) -> tuple[str, ...]:
        """The models measured, in record order."""
        ...

    #: False where nothing is compared with a baseline (a footprint, a search's record).
    comparable: bool

    def measure(self) -> list[Measured]:
        """Measure with no reference: one record per model."""
        ...

    def measure_ab(self, arms: Arms) -> list[Measured]:
        """Measure against the reference copies in ``arms``, comparisons decided."""
        ...


def _history(m: Measured, test: str, label: str, ctx: GateContext) -> Judgement:
    """Compare with the stored sessions (``baseline/history.py``); a shift counts once a
    second session sees it (:class:`~pytest_triton_perf.baseline.history.Suspicions`)."""
    if ctx.store is None:
        return [], {}
    store = ctx.store
    doc = store.load(ctx.key, test, label)
    path = store.path(ctx.key, test, label)
    if doc is None or not doc["runs"]:
        where = store.missing(ctx.key, test, label, ctx.root)
        status = "no baseline for this hardware" if where["elsewhere"] else NO_BASELINE
        return [], {"mode": "history", "status": status, "file": str(path), **where}
    runs = [r["result"] for r in doc["runs"]]
    last = doc["runs"][-1]
    current = m.result.to_dict()

    @functools.cache
    def machine(metric: str) -> history.Spread | None:
        return history.machine_spread(store.documents(ctx.key), metric)

    comps = history.compare_history(
        doc["runs"], current, ctx.gate, machine=machine, accepted=store.accepted(doc)
    )
    suspicions = history.Suspicions(
        path.parent / history.SUSPECTED_FILE, functools.partial(locked, path)
    )
    # A pipeline's regression names the step it comes from, a suspected one too.
    comps = name_regressed_step(comps, runs, current)
    session = str(ctx.revision.get("session") or "")
    comps = suspicions.settle(path.name, comps, session, ctx.revision.get("git_commit"))
    info = {
        "mode": "history",
        "status": "compared",
        "file": str(path),
        "runs": len(runs),
        "sessions": len(history.sessions(doc["runs"])),
        "revision": {k: last.get(k) for k in ("date", "git_commit", "config_hash")},
        "histogram": last.get("histogram"),
        "stream_histograms": last.get("stream_histograms") or {},
    }
    return comps, info


def _ab(m: Measured, test: str, label: str, ctx: GateContext) -> Judgement:
    """The comparisons decided while measuring (or, for the fixed Mann-Whitney design,
    the arms' windows compared now)."""
    if m.reference is None:
        return [], {"mode": "ab", "status": NO_BASELINE, "note": m.reference_note}
    ref = m.reference
    if m.comparisons is not None:
        comps = list(m.comparisons)
    else:
        comps = compare_results([ref.to_dict()], m.result.to_dict(), ctx.gate, mode="ab")
    comps = name_regressed_step(comps, [ref.to_dict()], m.result.to_dict())
    info = {
        "mode": "ab",
        "status": "compared",
        "note": m.reference_note,
        "design": m.ab_design,
        "reference": ref.to_dict(),
        "histogram": latency_histogram(ref.latencies_ms),
        "stream_histograms": stream_histograms(ref.stream),
    }
    return comps, info


def _nothing(m: Measured, test: str, label: str, ctx: GateContext) -> Judgement:
    return [], {}


@dataclass(frozen=True)
class Strategy:
    """One way of judging: how a subject is measured for it, and how a measurement is
    judged (``judge(measured, test, label, context)``)."""

    mode: Mode
    judge: Callable[[Measured, str, str, GateContext], Judgement]

    def measure(self, subject: Subject) -> list[Measured]:
        """The subject measured with no reference, marked with this strategy's mode."""
        measured = subject.measure()
        for m in measured:
            m.mode = self.mode
        return measured


NO_COMPARISON = Strategy(None, _nothing)
HISTORY = Strategy("history", _history)
AB = Strategy("ab", _ab)
STRATEGIES: dict[Mode, Strategy] = {s.mode: s for s in (NO_COMPARISON, HISTORY, AB)}


def judge(m: Measured, test: str, label: str, ctx: GateContext) -> Judgement:
    """The comparisons of one measurement by the strategy it was measured under."""
    return STRATEGIES[m.mode].judge(m, test, label, ctx)


def not_in_reference(models: Sequence[str], missing: Sequence[str], origin: str) -> str:
    """Why a subject in A/B mode is not compared: a model the reference lacks."""
    if len(models) == 1:
        return f"model '{models[0]}' does not exist in the reference ({origin})"
    return (
        f"model(s) {', '.join(missing)} do not exist in the reference ({origin}): the group "
        f"is not compared"
    )
