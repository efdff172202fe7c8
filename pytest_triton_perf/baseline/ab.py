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
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from pytest_triton_perf import options
from pytest_triton_perf.baseline.reference import base_name
from pytest_triton_perf.measure import streaming
from pytest_triton_perf.measure.result import LatencyStats, PerfResult, WindowResult
from pytest_triton_perf.options.parsers import AB_METHODS as AB_METHODS

if TYPE_CHECKING:
    from pytest_triton_perf.baseline.compare import GateSettings
    from pytest_triton_perf.verdicts import Comparison

#: Warm-up before every block after an arm's first: connections are new for each block.
BLOCK_WARMUP_S = 0.3
#: Least time a confirming comparison gets (what is left of the budget, or this, or 1.2
#: times what the first comparison took): enough to reach the first looks.
CONFIRM_MIN_S = 20.0


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


@dataclass(frozen=True)
class ABPlan:
    """How one A/B comparison is measured (the session's ``--triton-perf-*`` options)."""

    method: str = options.default("ab_method")  # one of AB_METHODS
    #: paired: time to a verdict at most; 0: the fixed design
    budget_s: float = options.default("compare_budget_s")
    #: fixed designs: pairs (paired) or windows per arm (mann-whitney)
    blocks: int = options.default("compare_windows")
    block_s: float = options.default("block_s")  # paired: length of one block's window
    warmup_s: float = options.default("warmup_s")  # the first block of each arm
    window_s: float = options.default("window_s")  # mann-whitney: length of one window
    block_warmup_s: float = 0.1  # paired: every later block (connections are new)
    #: paired: a regression is measured again with fresh instances before it counts
    confirm: bool = options.default("ab_confirm")


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
    confirmed: bool = False  # a regression was measured again with fresh instances

    def info(self) -> dict[str, Any]:
        """What the reports say about the design (JSON-ready)."""
        return {
            "method": self.method,
            "pairs": self.pairs,
            "elapsed_s": round(self.elapsed_s, 2),
            "stopped": self.stopped,
            "confirmed": self.confirmed,
        }


def run_ab(
    run: Callable[..., PerfResult],
    *,
    reference: str,
    candidate: str,
    plan: ABPlan,
    gate: GateSettings,
    model: str | None = None,
    refresh: Callable[[], None] | None = None,
    **kwargs: Any,
) -> ABOutcome:
    """Measure ``reference`` against ``candidate`` by ``plan`` and, for the paired method,
    decide every gated metric (stopping as soon as all are decided or one regressed).

    Both arms are reported under ``model`` (default: ``candidate``): they are usually
    served under derived names (``<model>__ref``, ``<model>__cand``).

    ``refresh`` loads both arms anew (fresh instances). With ``plan.confirm``, when the
    paired analysis finds a regression, it is called and the comparison measured again: two
    identical copies of a model can differ by a few percent for as long as their processes
    live (where the scheduler places them, measured beside a noisy neighbour), so the
    regression counts only when fresh instances show it too. The second comparison is a
    complete sequential test of its own, so its verdicts keep the error bounds; the first
    only decides whether it is needed."""
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
    outcome = _run_paired(run, reference, candidate, plan, gate, kwargs)
    if plan.confirm and refresh is not None and outcome.stopped == "regression":
        first = outcome
        t0 = time.perf_counter()
        refresh()
        # The confirmation shares the budget: what is left of it, but at least what the
        # first comparison took to decide (a slow model's p99 waits for its requests) and
        # enough to reach the first looks.
        left = plan.budget_s - first.elapsed_s - (time.perf_counter() - t0)
        fixed = plan.budget_s <= 0  # the fixed design repeats itself
        least = max(CONFIRM_MIN_S, 1.2 * first.elapsed_s)
        again = plan if fixed else dataclasses.replace(plan, budget_s=max(left, least))
        outcome = _run_paired(run, reference, candidate, again, gate, kwargs)
        outcome = _confirmed(first, outcome)
    outcome.reference = _named(outcome.reference, label)
    outcome.candidate = _named(outcome.candidate, label)
    return outcome


def _confirmed(first: ABOutcome, second: ABOutcome) -> ABOutcome:
    """The second comparison's verdicts, with what the first one saw in the notes."""
    from pytest_triton_perf.numbers import fmt_pct
    from pytest_triton_perf.verdicts import REGRESSION

    was = {c.metric: c for c in first.comparisons or []}
    comps = []
    for c in second.comparisons or []:
        before = was.get(c.metric)
        if before is not None and before.verdict == REGRESSION:
            if c.verdict == REGRESSION:
                note = "; confirmed with fresh instances of both arms"
            else:
                note = (
                    f"; the first comparison regressed ({fmt_pct(before.change_pct)}), the "
                    f"comparison with fresh instances of both arms did not"
                )
            c = dataclasses.replace(c, note=c.note + note)
        comps.append(c)
    second.comparisons = comps
    second.pairs += first.pairs
    second.elapsed_s += first.elapsed_s
    second.confirmed = True
    return second


def _named(result: PerfResult, model: str) -> PerfResult:
    """``result`` reported under ``model``, its pipeline steps under their own names."""
    return result.renamed(model, step_name=base_name)


def _run_paired(
    run: Callable[..., PerfResult],
    reference: str,
    candidate: str,
    plan: ABPlan,
    gate: GateSettings,
    kwargs: dict[str, Any],
) -> ABOutcome:
    from pytest_triton_perf.baseline.paired import PairedAnalysis
    from pytest_triton_perf.baseline.sequential import look_schedule
    from pytest_triton_perf.measure.engine import MeasureSettings

    blocks: tuple[list[PerfResult], list[PerfResult]] = ([], [])
    names = (reference, candidate)
    t0 = time.perf_counter()

    def block(arm: int) -> float:
        started = time.perf_counter()
        warm = plan.warmup_s if not blocks[arm] else min(plan.warmup_s, plan.block_warmup_s)
        settings = MeasureSettings(warmup_s=warm, windows=1, window_s=plan.block_s, max_windows=1)
        blocks[arm].append(run(names[arm], settings=settings, **kwargs))
        return time.perf_counter() - started

    fixed = plan.budget_s <= 0
    # The first quad (A B B A) sizes the rest: its last two blocks are a pair at the pace of
    # every later one (the first two carry each arm's long warm-up).
    block(0)
    block(1)
    pair_s = block(1) + block(0)
    if fixed:  # whole quads: half the pairs with the candidate second
        looks: tuple[int, ...] = (max(2, plan.blocks + plan.blocks % 2),)
    else:
        left = plan.budget_s - (time.perf_counter() - t0)
        looks = look_schedule(2 + max(0, int(left // pair_s)))
    analysis = PairedAnalysis(gate, looks)
    pairs = 2
    stopped = "budget"
    while True:
        if pairs in analysis.looks:
            analysis.look(blocks[0], blocks[1])
            if analysis.done:
                stopped = "regression" if analysis.regressed else "decided"
                break
        if pairs >= analysis.looks[-1]:
            stopped = "fixed" if fixed else "budget"
            break
        if not fixed and time.perf_counter() - t0 + 2 * pair_s > plan.budget_s * 1.1:
            break  # the next quad would overrun the budget: stop at the last look
        for arm in (0, 1, 1, 0):
            block(arm)
        pairs += 2
    elapsed = time.perf_counter() - t0
    ref, cand = merge_blocks(blocks[0]), merge_blocks(blocks[1])
    comps = analysis.comparisons(
        blocks[0], blocks[1], pairs=pairs, elapsed_s=elapsed, stopped=stopped
    )
    return ABOutcome(ref, cand, comps, pairs, elapsed, stopped, plan.method)
