"""Interleaved A/B measurement: reference and candidate blocks alternate A B B A A B B A ...

Each block is one measurement window of one arm after a short warm-up. Machine drift (a
noisy neighbour, thermal state, a background job) hits both arms alike, so it cancels in
the comparison instead of showing up as a regression.

Two designs:

- ``paired`` (the default, :func:`run_ab`): short blocks, analysed pair by pair
  (:mod:`pytest_triton_perf.baseline.paired`), adding ABBA quads until every gated metric is
  decided or the time budget is spent. A budget of 0 is the fixed design: ``blocks`` pairs,
  one look at the end.
- ``mann-whitney`` (:func:`measure_ab`): ``blocks`` windows per arm, the arms' pooled windows
  compared by Mann-Whitney U afterwards; kept for comparison.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from pytest_triton_perf import options
from pytest_triton_perf.baseline.reference import Reloaded, base_name
from pytest_triton_perf.measure import energy, streaming
from pytest_triton_perf.measure.result import LatencyStats, PerfResult, WindowResult
from pytest_triton_perf.options.parsers import AB_METHODS as AB_METHODS

if TYPE_CHECKING:
    from pytest_triton_perf.baseline.compare import GateSettings
    from pytest_triton_perf.baseline.epochs import Offset
    from pytest_triton_perf.baseline.paired import PairedAnalysis
    from pytest_triton_perf.verdicts import Comparison

#: Warm-up before every block after an arm's first: connections are new for each block.
BLOCK_WARMUP_S = 0.3


def abba_order(blocks: int) -> list[int]:
    """Arm of each block (0 = reference, 1 = candidate): A B B A A B B A ..., ``blocks`` each."""
    order: list[int] = []
    for i in range(blocks):
        order += [0, 1] if i % 2 == 0 else [1, 0]
    return order


def merge_blocks(blocks: list[PerfResult]) -> PerfResult:
    """One result from an arm's blocks: windows concatenated, latencies pooled (never
    averaged percentiles), counts summed, memory peaks kept."""
    first = blocks[0]
    windows: list[WindowResult] = []
    for b in blocks:
        for w in b.windows:
            windows.append(dataclasses.replace(w, index=len(windows)))
    latencies = np.concatenate([b.latencies_ms for b in blocks])
    duration = sum(w.duration_s for w in windows)
    inferences = sum(w.inferences for w in windows)

    def peak(values: list[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return max(present) if present else None

    errors = [b.first_error for b in blocks if b.first_error]
    return dataclasses.replace(
        first,
        throughput=inferences / duration if duration > 0 else 0.0,
        latency_ms=LatencyStats.from_samples(latencies),
        requests=sum(b.requests for b in blocks),
        errors=sum(b.errors for b in blocks),
        windows=tuple(windows),
        duration_s=duration,
        stable=all(b.stable for b in blocks),
        server=None,  # statistics deltas per block do not add up to one meaningful figure
        gpu_memory_mb=peak([b.gpu_memory_mb for b in blocks]),
        cpu_memory_mb=peak([b.cpu_memory_mb for b in blocks]),
        first_error=errors[0] if errors else None,
        latencies_ms=latencies,
        stream=streaming.merge([b.stream for b in blocks], duration),
        energy=energy.merge([b.energy for b in blocks]),
    )


def measure_ab(
    run: Callable[..., PerfResult],
    *,
    reference: str,
    candidate: str,
    blocks: int,
    warmup_s: float,
    window_s: float,
    **kwargs: Any,
) -> tuple[PerfResult, PerfResult]:
    """Measure ``reference`` and ``candidate`` in interleaved one-window blocks.

    ``run`` is the engine's ``measure`` bound to a server; returns (reference, candidate).
    """
    from pytest_triton_perf.measure.engine import MeasureSettings

    results: tuple[list[PerfResult], list[PerfResult]] = ([], [])
    names = (reference, candidate)
    for arm in abba_order(blocks):
        warm = warmup_s if not results[arm] else min(warmup_s, BLOCK_WARMUP_S)
        settings = MeasureSettings(warmup_s=warm, windows=1, window_s=window_s, max_windows=1)
        results[arm].append(run(names[arm], settings=settings, **kwargs))
    ref, cand = merge_blocks(results[0]), merge_blocks(results[1])
    # The reference is served under a derived name: report it under the model's own name.
    return ref.renamed(candidate, step_name=base_name), cand


#: Warm-up of each arm's first block of a load epoch (the session's warm-up where that is
#: shorter): the arms were just loaded, so their processes are fresh in every epoch, the
#: first as much as the later ones. (With the session's 2 s in the first epoch, its first
#: quad outlasted the epoch's 6 s, and it ended with 2 pairs where every later epoch had
#: 4-6.)
FRESH_WARMUP_S = 0.5


@dataclass(frozen=True)
class ABPlan:
    """How one A/B comparison is measured (the session's ``--triton-perf-*`` options)."""

    method: str = options.default("ab_method")  # one of AB_METHODS
    #: paired: time to a verdict at most; 0: the fixed design
    budget_s: float = options.default("compare_budget_s")
    #: fixed designs: pairs (paired, over all epochs) or windows per arm (mann-whitney)
    blocks: int = options.default("compare_windows")
    block_s: float = options.default("block_s")  # paired: length of one block's window
    #: paired: warm-up of each arm's first block of an epoch where shorter than
    #: FRESH_WARMUP_S; mann-whitney: of each arm's first window
    warmup_s: float = options.default("warmup_s")
    window_s: float = options.default("window_s")  # mann-whitney: length of one window
    block_warmup_s: float = 0.1  # paired: every later block (connections are new)
    #: paired: load epochs before the first decision (both arms loaded anew for each)
    epochs: int = options.default("ab_epochs")
    #: paired: time of one epoch's blocks (its reload and warm-ups come on top)
    epoch_s: float = 6.0
    #: seed of the load orders and starting arms (None: a fresh one, reported)
    seed: int | None = None


@dataclass
class ABOutcome:
    """One A/B comparison: each arm's blocks merged, and (paired) the comparisons."""

    reference: PerfResult
    candidate: PerfResult
    comparisons: list[Comparison] | None  # None: compared afterwards (mann-whitney)
    pairs: int
    elapsed_s: float  # from the first block's start to the verdict, warm-ups included
    stopped: str  # "decided", "regression", "budget" or "fixed"
    method: str
    #: paired: pairs of each load epoch, in order
    epochs: list[int] = dataclasses.field(default_factory=list)
    #: paired: per epoch, which arm was loaded first and which started the blocks
    orders: list[str] = dataclasses.field(default_factory=list)
    seed: int | None = None
    #: paired: how each metric's per-load offset variance was obtained
    offset: dict[str, str] = dataclasses.field(default_factory=dict)
    #: paired: the level of the tests (Holm shares it across the gated metrics)
    alpha: float | None = None
    #: paired: the level of the pass decisions (a change at the margin passes at most so)
    pass_alpha: float | None = None
    #: paired: each arm's blocks, in order (``epochs`` cuts them into load epochs)
    blocks: tuple[list[PerfResult], list[PerfResult]] = ([], [])
    #: paired: the names both arms are served under at the end (a refresh may rename them)
    served: tuple[str, str] | None = None

    def info(self) -> dict[str, Any]:
        """What the reports say about the design (JSON-ready)."""
        return {
            "method": self.method,
            "pairs": self.pairs,
            "elapsed_s": round(self.elapsed_s, 2),
            "stopped": self.stopped,
            "epochs": len(self.epochs),
            "pairs_per_epoch": list(self.epochs),
            "orders": list(self.orders),
            "seed": self.seed,
            "offset": dict(self.offset),
            "alpha": self.alpha,
            "pass_alpha": self.pass_alpha,
        }


#: ``refresh(candidate_first)``: unload both arms and load them again (the candidate first
#: or not); returns how they were loaded and the names they are served under now
#: (:meth:`ReferenceModels.refresher`).
Refresh = Callable[[bool], Reloaded]


def run_ab(
    run: Callable[..., PerfResult],
    *,
    reference: str,
    candidate: str,
    plan: ABPlan,
    gate: GateSettings,
    model: str | None = None,
    refresh: Refresh | None = None,
    offsets: Mapping[str, Offset] | None = None,
    **kwargs: Any,
) -> ABOutcome:
    """Measure ``reference`` against ``candidate`` by ``plan`` and, for the paired method,
    decide every gated metric (stopping as soon as all are decided or one regressed).

    Both arms are reported under ``model`` (default: ``candidate``): they are usually
    served under derived names (``<model>__ref``, ``<model>__cand``).

    Paired: the blocks come in load epochs. ``refresh`` loads both arms anew (fresh
    backend processes) before every epoch after the first, in a random order, and each
    epoch starts its A B B A sequence with a random arm: two identical copies of a model
    differ by an offset of their own for as long as their processes live, so the offset is
    drawn anew per epoch and the change is estimated across epochs
    (:mod:`pytest_triton_perf.baseline.sequential`), with ``offsets`` (the machine's stored
    A/A calibration) standing in for the offset's variance when the epochs are few. Without
    ``refresh`` (a server the plugin cannot reload models on) there is one epoch and the
    note says the offset is not modelled."""
    label = model or candidate
    if plan.method == "mann-whitney":
        t0 = time.perf_counter()
        ref, cand = measure_ab(
            run,
            reference=reference,
            candidate=candidate,
            blocks=plan.blocks,
            warmup_s=plan.warmup_s,
            window_s=plan.window_s,
            **kwargs,
        )
        ref, cand = _named(ref, label), _named(cand, label)
        return ABOutcome(
            ref, cand, None, plan.blocks, time.perf_counter() - t0, "fixed", plan.method
        )
    outcome = _run_paired(run, (reference, candidate), plan, gate, kwargs, refresh, offsets or {})
    outcome.reference = _named(outcome.reference, label)
    outcome.candidate = _named(outcome.candidate, label)
    return outcome


def _named(result: PerfResult, model: str) -> PerfResult:
    """``result`` reported under ``model``, its pipeline steps under their own names."""
    return result.renamed(model, step_name=base_name)


class _Blocks:
    """The blocks of one paired comparison, epoch by epoch."""

    def __init__(
        self,
        run: Callable[..., PerfResult],
        names: tuple[str, str],
        plan: ABPlan,
        kwargs: dict[str, Any],
        refresh: Refresh | None,
        rng: random.Random,
    ):
        self.run, self.names, self.plan, self.kwargs = run, names, plan, kwargs
        self.refresh, self.rng = refresh, rng
        self.arms: tuple[list[PerfResult], list[PerfResult]] = ([], [])
        self.sizes: list[int] = []  # pairs per epoch
        self.orders: list[str] = []
        self._quad: tuple[int, ...] = (0, 1, 1, 0)

    def start(self) -> None:
        """A new epoch: both arms loaded anew in a random order (not the first epoch: the
        arms were just loaded, in a random order, by the references) and a random arm
        first in its blocks."""
        loaded = "as loaded"
        if self.sizes and self.refresh is not None:
            first = self.rng.random() < 0.5
            reloaded = self.refresh(first)
            self.names = reloaded.names or self.names
            loaded = reloaded.how
        start = self.rng.randrange(2)
        self.orders.append(f"{loaded}, {'AB'[start]} first")
        self._quad = (start, 1 - start, 1 - start, start)
        self.sizes.append(0)

    def quad(self) -> float:
        """Four blocks, A B B A or B A A B: two more pairs of this epoch; its seconds."""
        from pytest_triton_perf.measure.engine import MeasureSettings

        t = time.perf_counter()
        plan = self.plan
        for i, arm in enumerate(self._quad):
            long = self.sizes[-1] == 0 and i < 2  # each arm's first block of the epoch
            warm = min(plan.warmup_s, plan.block_warmup_s)
            if long:  # fresh processes (every epoch's arms were just loaded): 0.5 s
                warm = min(plan.warmup_s, FRESH_WARMUP_S)
            settings = MeasureSettings(
                warmup_s=warm, windows=1, window_s=plan.block_s, max_windows=1
            )
            self.arms[arm].append(self.run(self.names[arm], settings=settings, **self.kwargs))
        self.sizes[-1] += 2
        return time.perf_counter() - t

    def epoch(self, seconds: float) -> float:
        """A whole epoch of quads for ``seconds`` of blocks; its seconds, reload included."""
        t = time.perf_counter()
        self.start()
        blocks_t = time.perf_counter()
        while True:
            self.quad()
            if time.perf_counter() - blocks_t >= seconds:
                return time.perf_counter() - t

    def look(self, analysis: PairedAnalysis, epochs: bool = True) -> bool:
        """Look at every block so far; whether the analysis is done."""
        analysis.look(self.arms[0], self.arms[1], self.sizes if epochs else None)
        return analysis.done


def _run_paired(
    run: Callable[..., PerfResult],
    names: tuple[str, str],
    plan: ABPlan,
    gate: GateSettings,
    kwargs: dict[str, Any],
    refresh: Refresh | None,
    offsets: Mapping[str, Offset],
) -> ABOutcome:
    from pytest_triton_perf.baseline.paired import PairedAnalysis

    seed = plan.seed if plan.seed is not None else random.SystemRandom().randrange(2**31)
    b = _Blocks(run, names, plan, kwargs, refresh, random.Random(seed))
    t0 = time.perf_counter()
    epochs_min = max(1, plan.epochs) if refresh is not None else 1
    if plan.budget_s <= 0:  # the fixed design: plan.blocks pairs over the epochs, one look
        per = max(2, math.ceil(plan.blocks / epochs_min))
        per += per % 2
        for _ in range(epochs_min):
            b.start()
            while b.sizes[-1] < per:
                b.quad()
        looks = (epochs_min,) if epochs_min > 1 else (per,)
        analysis = PairedAnalysis(gate, looks, offsets=offsets)
        b.look(analysis)
        stopped = "fixed"
    elif epochs_min > 1:
        stopped, analysis = _epochs(b, epochs_min, plan, gate, offsets, t0)
    else:
        stopped, analysis = _one_load(b, plan, gate, t0)
    elapsed = time.perf_counter() - t0
    ref, cand = merge_blocks(b.arms[0]), merge_blocks(b.arms[1])
    pairs = sum(b.sizes)
    comps = analysis.comparisons(
        b.arms[0], b.arms[1], pairs=pairs, elapsed_s=elapsed, stopped=stopped
    )
    if refresh is None:
        comps = [
            dataclasses.replace(
                c,
                note=c.note + "; one load of the arms (the server cannot reload them): "
                "their own offset is not modelled",
            )
            for c in comps
        ]
    return ABOutcome(
        ref,
        cand,
        comps,
        pairs,
        elapsed,
        stopped,
        plan.method,
        epochs=list(b.sizes),
        orders=list(b.orders),
        seed=seed,
        offset=dict(analysis.offset_how),
        alpha=gate.alpha,
        pass_alpha=gate.pass_alpha,
        blocks=b.arms,
        served=b.names,
    )


def _epochs(
    b: _Blocks,
    epochs_min: int,
    plan: ABPlan,
    gate: GateSettings,
    offsets: Mapping[str, Offset],
    t0: float,
) -> tuple[str, PairedAnalysis]:
    """Epochs until every gated metric is decided or the budget is spent. The looks are
    planned once the second epoch (with its reload) sized an epoch: one after each epoch
    from the ``epochs_min``-th on, as many as the budget holds."""
    from pytest_triton_perf.baseline.paired import PairedAnalysis

    b.epoch(plan.epoch_s)
    last_s = b.epoch(plan.epoch_s)
    left = plan.budget_s - (time.perf_counter() - t0)
    most = max(epochs_min, 2 + int(left // last_s))
    looks = tuple(range(epochs_min, most + 1))
    analysis = PairedAnalysis(gate, looks, offsets=offsets)
    while True:
        if len(b.sizes) >= epochs_min:
            if b.look(analysis):
                return ("regression" if analysis.regressed else "decided"), analysis
            if len(b.sizes) >= looks[-1] or (
                time.perf_counter() - t0 + last_s > plan.budget_s * 1.1
            ):
                return "budget", analysis
        last_s = b.epoch(plan.epoch_s)


def _one_load(
    b: _Blocks, plan: ABPlan, gate: GateSettings, t0: float
) -> tuple[str, PairedAnalysis]:
    """The sequential design over the pairs of one load (a server that cannot reload the
    arms): looks after planned pair counts, as before epochs."""
    from pytest_triton_perf.baseline.paired import PairedAnalysis
    from pytest_triton_perf.baseline.sequential import look_schedule

    b.start()
    b.quad()
    pair_s = b.quad() / 2  # the second quad runs at the pace of every later one
    left = plan.budget_s - (time.perf_counter() - t0)
    looks = look_schedule(4 + max(0, int(left // pair_s)))
    analysis = PairedAnalysis(gate, looks)
    while True:
        pairs = b.sizes[0]
        if pairs in looks and b.look(analysis, epochs=False):
            return ("regression" if analysis.regressed else "decided"), analysis
        if pairs >= looks[-1] or time.perf_counter() - t0 + 2 * pair_s > plan.budget_s * 1.1:
            if pairs not in looks:
                b.look(analysis, epochs=False)
            return "budget", analysis
        b.quad()
