"""How a measurement is judged: no comparison, history (the stored accepted runs) or A/B
(a reference copy in the same server). Each strategy is one object that measures a
:class:`~pytest_triton_perf.gate.pipeline.Subject` and judges what it measured; the
pipeline picks one (:meth:`GatePipeline.mode`) and every capability goes through it."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from pytest_triton_perf.baseline.compare import GateSettings, compare_results
from pytest_triton_perf.baseline.steps import name_regressed_step
from pytest_triton_perf.gate.context import GateContext, Measured, Mode
from pytest_triton_perf.numbers import fmt_p, fmt_pct
from pytest_triton_perf.verdicts import (
    NO_BASELINE,
    REGRESSION,
    Comparison,
    latency_histogram,
    stream_histograms,
)

if TYPE_CHECKING:
    from pytest_triton_perf.baseline.ab import ABPlan
    from pytest_triton_perf.baseline.reference import ReferenceModels
    from pytest_triton_perf.baseline.sequential import Offset
    from pytest_triton_perf.measure.result import PerfResult

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

    def refresh(self, model: str) -> Callable[[bool], str | None] | None:
        """Loads both arms anew (fresh instances; ``refresh(candidate_first)``): only where
        both arms are copies."""
        _, candidate, _ = self.names[model]
        if candidate == model:
            return None
        return functools.partial(self.references.reload, model)


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
        """Measure with no reference: one record per model, each with ``remeasure`` for a
        history confirmation."""
        ...

    def measure_ab(self, arms: Arms) -> list[Measured]:
        """Measure against the reference copies in ``arms``, comparisons decided."""
        ...


def compare_with_runs(
    runs: Sequence[dict[str, Any]],
    current: dict[str, Any],
    gate: GateSettings,
    remeasure: Callable[[], PerfResult] | None = None,
) -> list[Comparison]:
    """History's comparison of one result (``PerfResult.to_dict()``) with stored runs: a
    regression is measured once more with ``remeasure`` where one is given, and counts only
    when the re-measurement regresses too. Shared by history mode and ``triton-perf
    compare`` (two results files, nothing to re-measure)."""
    comps = compare_results(runs, current, gate, mode="history")
    if any(c.verdict == REGRESSION for c in comps) and remeasure is not None:
        again = compare_results(runs, remeasure().to_dict(), gate, mode="history")
        first = {c.metric: c for c in comps}
        confirmed = []
        for c in again:
            was = first[c.metric]
            if was.verdict == REGRESSION and c.verdict == REGRESSION:
                c = replace(c, note=c.note + "; confirmed by a re-measurement")
            elif was.verdict == REGRESSION:
                c = replace(
                    c,
                    note=c.note + f"; the first measurement regressed ({fmt_pct(was.change_pct)}, "
                    f"p={fmt_p(was.p_value)}), the re-measurement did not",
                )
            confirmed.append(c)
        comps = confirmed
    return comps


def _history(m: Measured, test: str, label: str, ctx: GateContext) -> Judgement:
    """Compare with the stored accepted runs; re-measure once to confirm a regression."""
    if ctx.store is None:
        return [], {}
    doc = ctx.store.load(ctx.key, test, label)
    path = ctx.store.path(ctx.key, test, label)
    if doc is None or not doc["runs"]:
        elsewhere = ctx.store.other_keys_with(test, label)
        status = "no baseline for this hardware" if elsewhere else NO_BASELINE
        note = f"stored for: {', '.join(elsewhere)}" if elsewhere else ""
        return [], {"mode": "history", "status": status, "file": str(path), "note": note}
    runs = [r["result"] for r in doc["runs"]]
    last = doc["runs"][-1]
    info = {
        "mode": "history",
        "status": "compared",
        "file": str(path),
        "runs": len(runs),
        "revision": {k: last.get(k) for k in ("date", "git_commit", "config_hash")},
        "histogram": last.get("histogram"),
        "stream_histograms": last.get("stream_histograms") or {},
    }
    comps = compare_with_runs(runs, m.result.to_dict(), ctx.gate, m.remeasure)
    # A pipeline's regression names the step it comes from.
    comps = name_regressed_step(comps, runs, m.result.to_dict())
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
        """The subject measured with no reference, marked with this strategy's mode; the
        history confirmation kept only where history judges."""
        measured = subject.measure()
        for m in measured:
            m.mode = self.mode
            if self.mode != "history":
                m.remeasure = None
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
