"""Models measured together (co-location), and what each costs the others.

**Together.** :func:`~pytest_triton_perf.measure.engine.measure_group` drives every model of
the group under its own workload in one event loop with one window clock: the models warm
up, are snapshotted and start together, and window ``k`` of each covers the same time. That
measurement is the group's record (a ``PerfResult`` per model, naming the others in
``together_with``).

**Interference.** Then the models are measured alone and together in interleaved rounds:
round 0 runs ``alone a, alone b, together``, round 1 ``together, alone b, alone a``, and so
on (one short block each, ``--triton-perf-block-s``), so that drift of the machine hits both
arms of a pair alike and an order effect cancels over the rounds, as in A/B mode's ABBA
design (:mod:`pytest_triton_perf.baseline.ab`). Each round pairs a model's alone block with
its together block:

- throughput: the log-ratios ``log(together / alone)`` of the rounds, their mean and a paired
  Student-t interval (:func:`~pytest_triton_perf.baseline.sequential.decide` with one look,
  where Pocock's constant is the normal quantile and the interval the plain t interval);
- p99: each arm's p99 over its pooled blocks (a block's tail rests on a handful of requests),
  with a pair bootstrap over the rounds for its standard error
  (:func:`~pytest_triton_perf.baseline.sequential.decide_pooled`).

Both are reported as ratios together / alone with 95% intervals
(:class:`~pytest_triton_perf.measure.result.Interference`), and are metrics of the catalogue
(``colocation_p99``, ``colocation_throughput``): stored with the record, and compared with
their baseline in history mode round by round (the rounds' ratios are the samples).

**A/B mode.** With references loaded, the group runs as two arms (every model's reference
copy together, every candidate copy together) in paired rounds, the arms' order alternating;
each model's together blocks are compared pair by pair (:class:`~pytest_triton_perf.baseline.
paired.PairedAnalysis`, a fixed design of ``rounds`` pairs), and, with interference, the
co-location cost of the candidate against the reference's: throughput per round,
``log((cand together / cand alone) / (ref together / ref alone))``, decided by the same
paired rule; p99 from each arm's pooled tails (:mod:`~pytest_triton_perf.baseline.cost`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pytest_triton_perf import metrics
from pytest_triton_perf.baseline.ab import BLOCK_WARMUP_S, merge_blocks
from pytest_triton_perf.baseline.compare import GateSettings, smallest_change
from pytest_triton_perf.baseline.cost import pooled_cost_change
from pytest_triton_perf.baseline.paired import METHOD, PairedAnalysis, log_ratios
from pytest_triton_perf.baseline.reference import base_name
from pytest_triton_perf.baseline.sequential import (
    MIN_POOLED_REQUESTS,
    PairedDecision,
    decide,
    decide_pooled,
    pooled_quantile,
)
from pytest_triton_perf.errors import ArgumentError
from pytest_triton_perf.measure.engine import MeasureSettings
from pytest_triton_perf.measure.result import Interference, PerfResult
from pytest_triton_perf.measure.stats import median_ci
from pytest_triton_perf.verdicts import INCONCLUSIVE, Comparison

#: Rounds of the interference design unless told otherwise (each: every model alone, then
#: all together, one block each).
INTERFERENCE_ROUNDS = 6
#: One-sided level of the interference intervals: 95% two-sided.
INTERVAL_ALPHA = 0.025
#: ``measure()`` keywords that belong to the whole group: the same windows for every model.
GROUP_KEYWORDS = ("warmup_s", "windows", "window_s", "settings")

#: Runs one block or measurement of several models together: ``{name: keywords}`` ->
#: ``{name: result}`` (``measure_group`` bound to a server).
GroupRunner = Callable[[Mapping[str, Mapping[str, Any]], MeasureSettings], dict[str, PerfResult]]


def check_loads(loads: Any) -> dict[str, dict[str, Any]]:
    """``{"a": dict(concurrency=4), "b": dict(request_rate=200)}`` validated: two models or
    more, each with a dict of ``measure()`` keywords (the window settings are the group's).
    ArgumentError (a ValueError) naming the model and what is accepted."""
    example = '{"a": dict(concurrency=4), "b": dict(request_rate=200)}'
    if not isinstance(loads, Mapping):
        raise ArgumentError(
            f"measure_together: a dict of model name -> measure() keywords is accepted, e.g. "
            f"{example}; got {type(loads).__name__}"
        )
    if len(loads) < 2:
        raise ArgumentError(
            f"measure_together: {len(loads)} model(s) given; co-location needs two or more, "
            f"e.g. {example} (measure one model with triton_perf.measure)"
        )
    out: dict[str, dict[str, Any]] = {}
    for model, options in loads.items():
        if not isinstance(model, str) or not model:
            raise ArgumentError(f"measure_together: {model!r} is not a model name (a string)")
        if not isinstance(options, Mapping):
            raise ArgumentError(
                f"measure_together: model '{model}': its workload must be a dict of measure() "
                f"keywords, e.g. dict(concurrency=4); got {options!r}"
            )
        shared = [k for k in options if k in GROUP_KEYWORDS]
        if shared:
            raise ArgumentError(
                f"measure_together: model '{model}': {', '.join(shared)} apply to the whole "
                f"group (every model is measured in the same windows); pass them to "
                f"measure_together itself"
            )
        for key in ("concurrency", "request_rate"):
            if isinstance(options.get(key), (list, tuple)):
                raise ArgumentError(
                    f"measure_together: model '{model}': {key}={options[key]!r}: one load "
                    f"level per model in a group (sweeps are for triton_perf.measure)"
                )
        out[model] = dict(options)
    return out


def check_rounds(rounds: Any) -> int:
    """An interference design's rounds: an integer >= 2 (a paired interval needs two)."""
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 2:
        raise ArgumentError(
            f"measure_together: rounds must be an integer >= 2 (pairs of alone and together "
            f"blocks per model), got {rounds!r}"
        )
    return rounds


def block_settings(settings: MeasureSettings, block_s: float) -> MeasureSettings:
    """One block of an interleaved design: a short warm-up (the models are warm; the
    connections are new), then one window of ``block_s``."""
    return dataclasses.replace(
        settings,
        warmup_s=min(settings.warmup_s, BLOCK_WARMUP_S),
        windows=1,
        window_s=block_s,
        max_windows=1,
    )


def round_order(models: Sequence[str], index: int) -> list[str | None]:
    """The blocks of round ``index``: each model alone (its name), then all together
    (None); every other round reversed."""
    blocks: list[str | None] = [*models, None]
    return blocks if index % 2 == 0 else blocks[::-1]


@dataclass
class Rounds:
    """Blocks of an interleaved design, by model: alone and together, one per round."""

    alone: dict[str, list[PerfResult]] = field(default_factory=dict)
    together: dict[str, list[PerfResult]] = field(default_factory=dict)

    def add_alone(self, model: str, result: PerfResult) -> None:
        """Record ``model``'s alone block of the current round."""
        self.alone.setdefault(model, []).append(result)

    def add_together(self, results: Mapping[str, PerfResult]) -> None:
        """Record the together block of the current round (a result per model)."""
        for model, result in results.items():
            self.together.setdefault(model, []).append(result)


def run_rounds(
    run: GroupRunner,
    loads: Mapping[str, Mapping[str, Any]],
    settings: MeasureSettings,
    rounds: int,
    names: Mapping[str, str] | None = None,
) -> Rounds:
    """The interleaved design of the module docstring: ``rounds`` rounds of every model
    alone and all together. ``names`` maps a model to the name it is served under (A/B
    copies); blocks are kept under the model's own name."""
    served = {m: (names or {}).get(m, m) for m in loads}
    out = Rounds()
    for index in range(rounds):
        for block in round_order(list(loads), index):
            if block is None:
                results = run({served[m]: loads[m] for m in loads}, settings)
                out.add_together({m: results[served[m]] for m in loads})
            else:
                alone = run({served[block]: loads[block]}, settings)
                out.add_alone(block, alone[served[block]])
    return out


def _p99(block: PerfResult) -> float | None:
    return block.latency_ms.p99 if block.latency_ms is not None else None


def _ratio_interval(interval: tuple[float, float]) -> tuple[float, float] | None:
    lo, hi = interval
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return None
    return 1.0 + lo, 1.0 + hi


def interference_of(model: str, rounds: Rounds, together_with: Sequence[str]) -> Interference:
    """The co-location cost of ``model`` from its alone and together blocks (module
    docstring): ratios together / alone with 95% intervals, and each round's ratio."""
    alone, together = rounds.alone.get(model, []), rounds.together.get(model, [])
    n = min(len(alone), len(together))
    alone, together = alone[:n], together[:n]
    notes: list[str] = []
    alone_lat = [b.latencies_ms for b in alone]
    together_lat = [b.latencies_ms for b in together]
    has_lat = n > 0 and all(len(x) for x in alone_lat) and all(len(x) for x in together_lat)
    alone_p99 = pooled_quantile(alone_lat, 99.0) if has_lat else None
    together_p99 = pooled_quantile(together_lat, 99.0) if has_lat else None
    p99_ratio = p99_interval = None
    if alone_p99 and together_p99:
        p99_ratio = together_p99 / alone_p99
        pooled = decide_pooled(
            alone_lat,
            together_lat,
            99.0,
            looks=(n,),
            alpha=INTERVAL_ALPHA,
            effect=0.0,
            target=0.0,
        )
        if pooled is not None:
            p99_interval = _ratio_interval(pooled.interval)
        else:
            notes.append(
                f"p99 ratio without an interval: an interval needs two rounds and "
                f"{MIN_POOLED_REQUESTS} requests per arm (alone {sum(map(len, alone_lat))}, "
                f"together {sum(map(len, together_lat))}); raise the load or --triton-perf-block-s"
            )
    elif n:
        notes.append("a block without a successful request: no p99 ratio")
    throughputs = log_ratios([b.throughput for b in alone], [b.throughput for b in together])
    tp_ratio = tp_interval = None
    if len(throughputs) >= 2:
        d = decide(
            throughputs,
            higher_is_worse=False,
            looks=(len(throughputs),),
            alpha=INTERVAL_ALPHA,
            effect=0.0,
            target=0.0,
        )
        tp_ratio = 1.0 + d.change
        tp_interval = _ratio_interval(d.interval)
    elif throughputs:
        tp_ratio = math.exp(throughputs[0])
    p99_rounds = tuple(
        t / a
        for a, t in zip(map(_p99, alone), map(_p99, together), strict=True)
        if a is not None and t is not None and a > 0
    )
    tp_rounds = tuple(
        t.throughput / a.throughput
        for a, t in zip(alone, together, strict=True)
        if a.throughput > 0
    )
    return Interference(
        rounds=n,
        together_with=tuple(together_with),
        alone_p99_ms=alone_p99,
        together_p99_ms=together_p99,
        alone_throughput=merge_blocks(alone).throughput if alone else None,
        together_throughput=merge_blocks(together).throughput if together else None,
        p99_ratio=p99_ratio,
        p99_interval=p99_interval,
        throughput_ratio=tp_ratio,
        throughput_interval=tp_interval,
        p99_rounds=p99_rounds,
        throughput_rounds=tp_rounds,
        notes=tuple(notes),
    )


@dataclass
class GroupOutcome:
    """A group's measurement: a result per model (with its co-location cost when the
    interference rounds ran) and, in A/B mode, each model's reference and comparisons."""

    results: dict[str, PerfResult]
    references: dict[str, PerfResult] | None = None
    comparisons: dict[str, list[Comparison]] | None = None
    rounds: int = 0
    elapsed_s: float = 0.0
    design: str = ""

    def analysis(self, block_s: float | None = None) -> dict[str, Any]:
        """The group's record for the reports (``{"group": ...}`` of a measurement record):
        the models, their workloads, and each one's co-location cost."""
        out: dict[str, Any] = {
            "models": list(self.results),
            "loads": {m: r.workload.describe() for m, r in self.results.items()},
            "figures": {
                m: {
                    "p50_ms": r.latency_ms.p50 if r.latency_ms else None,
                    "p99_ms": r.latency_ms.p99 if r.latency_ms else None,
                    "throughput": r.throughput,
                }
                for m, r in self.results.items()
            },
            "rounds": self.rounds,
            "design": self.design,
            "elapsed_s": round(self.elapsed_s, 2),
            "interference": {
                m: r.interference.to_dict() for m, r in self.results.items() if r.interference
            },
        }
        if block_s is not None:
            out["block_s"] = block_s
        if self.references is not None:
            out["reference_interference"] = {
                m: r.interference.to_dict() for m, r in self.references.items() if r.interference
            }
        return out


def with_interference(
    results: Mapping[str, PerfResult], rounds: Rounds | None
) -> dict[str, PerfResult]:
    """Each model's result with its co-location cost from ``rounds`` (unchanged without)."""
    if rounds is None:
        return dict(results)
    names = list(results)
    return {
        m: dataclasses.replace(
            r, interference=interference_of(m, rounds, [n for n in names if n != m])
        )
        for m, r in results.items()
    }


def measure_together(
    run: GroupRunner,
    loads: Mapping[str, Mapping[str, Any]],
    settings: MeasureSettings,
    *,
    interference_rounds: int | None,
    block_s: float,
) -> GroupOutcome:
    """The group measured together in the same windows (the record), then, with
    ``interference_rounds``, the interleaved rounds of alone and together blocks."""
    t0 = time.perf_counter()
    together = run(loads, settings)
    rounds = None
    if interference_rounds:
        rounds = run_rounds(run, loads, block_settings(settings, block_s), interference_rounds)
    design = (
        f"together in the same windows, then {interference_rounds} interleaved rounds of "
        f"alone and together blocks of {block_s:g} s"
        if interference_rounds
        else "together in the same windows"
    )
    return GroupOutcome(
        with_interference(together, rounds),
        rounds=interference_rounds or 0,
        elapsed_s=time.perf_counter() - t0,
        design=design,
    )


def measure_together_ab(
    run: GroupRunner,
    loads: Mapping[str, Mapping[str, Any]],
    settings: MeasureSettings,
    *,
    arms: Mapping[str, tuple[str, str]],
    rounds: int,
    interference: bool,
    block_s: float,
    gate: GateSettings,
) -> GroupOutcome:
    """A/B mode (module docstring): ``rounds`` pairs of the reference group and the
    candidate group (``arms``: model -> (reference name, candidate name)), their order
    alternating; with ``interference`` each arm's alone blocks are measured in its turn.
    Every model is compared pair by pair on its together blocks and, with interference, on
    its co-location cost."""
    t0 = time.perf_counter()
    block = block_settings(settings, block_s)
    models = list(loads)
    arm_rounds = (Rounds(), Rounds())
    for index in range(rounds):
        order = (0, 1) if index % 2 == 0 else (1, 0)
        for position, arm in enumerate(order):
            served = {m: arms[m][arm] for m in models}
            # The first arm of a round ends with its together block, the second starts with
            # it: the two arms' together blocks (the pair compared) run side by side.
            blocks = round_order(models, position) if interference else [None]
            for b in blocks:
                if b is None:
                    results = run({served[m]: loads[m] for m in models}, block)
                    arm_rounds[arm].add_together({m: results[served[m]] for m in models})
                else:
                    alone = run({served[b]: loads[b]}, block)
                    arm_rounds[arm].add_alone(b, alone[served[b]])
    elapsed = time.perf_counter() - t0
    references: dict[str, PerfResult] = {}
    candidates: dict[str, PerfResult] = {}
    comparisons: dict[str, list[Comparison]] = {}
    for m in models:
        others = [n for n in models if n != m]
        ref_blocks, cand_blocks = arm_rounds[0].together[m], arm_rounds[1].together[m]
        ref = _named(merge_blocks(ref_blocks), m, others)
        cand = _named(merge_blocks(cand_blocks), m, others)
        if interference:
            ref = dataclasses.replace(ref, interference=interference_of(m, arm_rounds[0], others))
            cand = dataclasses.replace(cand, interference=interference_of(m, arm_rounds[1], others))
        analysis = PairedAnalysis(gate, (rounds,))
        analysis.look(ref_blocks, cand_blocks)
        comps = analysis.comparisons(
            ref_blocks, cand_blocks, pairs=rounds, elapsed_s=elapsed, stopped="fixed"
        )
        if interference:
            comps += cost_comparisons(m, arm_rounds[0], arm_rounds[1], gate, rounds)
        references[m], candidates[m], comparisons[m] = ref, cand, comps
    design = f"A/B: {rounds} pairs of the reference group and the candidate group" + (
        f", each with its models alone and together, blocks of {block_s:g} s"
        if interference
        else ""
    )
    return GroupOutcome(
        candidates,
        references=references,
        comparisons=comparisons,
        rounds=rounds,
        elapsed_s=elapsed,
        design=design,
    )


def _named(result: PerfResult, model: str, others: Sequence[str]) -> PerfResult:
    """``result`` (of a copy served under a derived name) reported under ``model``, beside
    ``others`` by their own names."""
    return result.renamed(model, step_name=base_name, together_with=others)


def cost_rounds(model: str, rounds: Rounds, metric: str) -> list[float | None]:
    """Each round's co-location ratio of ``model`` on ``metric`` (together / alone)."""
    read = _p99 if metric == "colocation_p99" else (lambda b: b.throughput)
    out: list[float | None] = []
    for a, t in zip(rounds.alone.get(model, []), rounds.together.get(model, []), strict=False):
        va, vt = read(a), read(t)
        out.append(vt / va if va and vt is not None else None)
    return out


def _latencies(model: str, rounds: Rounds) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``model``'s alone and together latencies, one array per round."""
    alone, together = rounds.alone.get(model, []), rounds.together.get(model, [])
    n = min(len(alone), len(together))
    return [b.latencies_ms for b in alone[:n]], [b.latencies_ms for b in together[:n]]


def _pooled_cost(model: str, rounds: Rounds) -> float | None:
    """``model``'s co-location cost on p99 over its pooled blocks: together / alone."""
    alone, together = _latencies(model, rounds)
    if not alone or not all(len(x) for x in (*alone, *together)):
        return None
    a = pooled_quantile(alone, 99.0)
    return pooled_quantile(together, 99.0) / a if a > 0 else None


def cost_comparisons(
    model: str, reference: Rounds, candidate: Rounds, gate: GateSettings, pairs: int
) -> list[Comparison]:
    """A/B mode: the candidate's co-location cost against the reference's. Throughput
    round by round, ``log(candidate ratio / reference ratio)`` decided by the paired rule
    (one look); p99 from each arm's pooled tails (a block's p99 is about its maximum), with
    a pair bootstrap over rounds (:func:`~pytest_triton_perf.baseline.cost.pooled_cost_change`)."""
    out = []
    for meta in metrics.GATED:
        if not meta.colocation_only or meta.name in gate.disabled:
            continue
        ref = cost_rounds(model, reference, meta.name)
        cand = cost_rounds(model, candidate, meta.name)
        r = [v for v in ref if v is not None]
        c = [v for v in cand if v is not None]
        effect = gate.min_effect.get(meta.name, 0.0)
        d: PairedDecision | None
        if meta.name == "colocation_p99":
            base, cur = _pooled_cost(model, reference), _pooled_cost(model, candidate)
            d = pooled_cost_change(
                _latencies(model, reference),
                _latencies(model, candidate),
                99.0,
                alpha=gate.alpha,
                pass_alpha=gate.pass_alpha,
                effect=effect,
                target=smallest_change(gate, meta.name, base),
            )
            what, few = "pooled p99 co-location costs", f"{MIN_POOLED_REQUESTS} requests"
        else:
            base = float(np.median(r)) if r else None
            cur = float(np.median(c)) if c else None
            x = log_ratios(ref, cand)
            d = None
            if len(x) >= 2:
                d = decide(
                    x,
                    higher_is_worse=meta.higher_is_worse,
                    looks=(pairs,),
                    alpha=gate.alpha,
                    pass_alpha=gate.pass_alpha,
                    effect=effect,
                    target=smallest_change(gate, meta.name, base),
                )
            what, few = "rounds of co-location ratios (together / alone)", "2 rounds"
        if d is None:
            out.append(
                Comparison(
                    meta.name,
                    INCONCLUSIVE,
                    "ab",
                    baseline=base,
                    current=cur,
                    note=f"too few rounds or requests with the figure in both arms (needs "
                    f"{few} per arm)",
                )
            )
            continue
        lo, hi = d.interval
        out.append(
            Comparison(
                metric=meta.name,
                verdict=d.verdict or INCONCLUSIVE,
                mode="ab",
                baseline=base,
                baseline_ci=median_ci(r),
                current=cur,
                current_ci=median_ci(c),
                change_pct=100.0 * d.change,
                p_value=d.p_value,
                note=f"{METHOD} over {d.units} {what}, interval "
                f"[{100 * lo:+.1f}%, {100 * hi:+.1f}%]" + ("" if d.verdict else "; undecided"),
                mde_pct=100.0 * d.mde,
                change_ci=(100.0 * lo, 100.0 * hi),
            )
        )
    return out


__all__ = [
    "INTERFERENCE_ROUNDS",
    "GroupOutcome",
    "Rounds",
    "check_loads",
    "check_rounds",
    "interference_of",
    "measure_together",
    "measure_together_ab",
    "round_order",
]
