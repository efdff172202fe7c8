"""Comparisons of the paired A/B analysis: the metric catalogue applied to interleaved blocks.

The statistics are in :mod:`pytest_triton_perf.baseline.sequential`; this module turns the
blocks of each arm into per-metric log-ratios, decides each gated metric at a look, and
writes the :class:`~pytest_triton_perf.verdicts.Comparison` records the reports show.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import t as student_t

from pytest_triton_perf import metrics
from pytest_triton_perf.baseline.compare import GateSettings, compare_errors, smallest_change
from pytest_triton_perf.baseline.sequential import (
    MIN_POOLED_REQUESTS,
    MIN_UNITS,
    POWER,
    PairedDecision,
    decide,
    decide_pooled,
    nominal_t,
    pocock_constant,
    pooled_quantile,
)
from pytest_triton_perf.measure.result import PerfResult
from pytest_triton_perf.measure.stats import median_ci
from pytest_triton_perf.verdicts import INCONCLUSIVE, REGRESSION, Comparison

#: The method's name in notes and reports.
METHOD = "paired t on ABBA log-ratios, Pocock repeated intervals"


def _pct(fraction: float) -> str:
    v = 100 * fraction
    return f"{v:+.1f}%" if abs(v) < 10 else f"{v:+.0f}%"


#: Latency percentiles decided over each arm's pooled blocks (their tail is too thin per
#: block): metric name -> percentile.
POOLED = {"p99_ms": 99.0, "ttft_p99_ms": 99.0, "itl_p99_ms": 99.0}


def raw_values(block: PerfResult, metric: str) -> np.ndarray:
    """The raw values (ms) a pooled percentile of ``metric`` is taken over: the block's
    latencies, or for a streaming model its TTFTs or its gaps between responses."""
    if metric.startswith(("ttft_", "itl_")):
        if block.stream is None:
            return np.empty(0)
        if metric.startswith("ttft_"):
            return block.stream.ttft_samples_ms
        return block.stream.itl_samples_ms
    return block.latencies_ms


def block_values(blocks: Sequence[PerfResult], metric: str) -> list[float | None]:
    """The metric of each block of one arm (None where a block has no such figure)."""
    meta = metrics.BY_NAME[metric]
    out: list[float | None] = []
    for b in blocks:
        v = meta.read(b)
        out.append(float(v) if v is not None else None)
    return out


def log_ratios(ref: Sequence[float | None], cand: Sequence[float | None]) -> list[float]:
    """``log(candidate / reference)`` for each unit where both arms have a positive value."""
    return [
        math.log(c / r)
        for r, c in zip(ref, cand, strict=False)
        if r is not None and c is not None and r > 0 and c > 0
    ]


@dataclass
class PairedAnalysis:
    """The sequential paired analysis of one A/B measurement, look by look.

    ``looks`` are the planned pair counts (the boundary of every metric follows from them).
    """

    gate: GateSettings
    looks: tuple[int, ...]
    decisions: dict[str, PairedDecision] = dataclasses.field(default_factory=dict)
    #: Whether the blocks come from a streaming model (TTFT and ITL are decided too); set by
    #: the first look.
    streaming: bool = False
    #: Metrics given up as undecidable within the budget -> the MDE projected at the last look.
    futile: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def metrics(self) -> tuple[str, ...]:
        """The gated metrics this analysis decides (the per-window ones not switched off)."""
        return tuple(
            m.name
            for m in metrics.GATED
            if m.per_window
            and not m.search_only
            and (self.streaming or not m.streaming_only)
            and not m.colocation_only  # compared round by round (colocation.py)
            and m.name not in self.gate.disabled
        )

    def look(self, ref: Sequence[PerfResult], cand: Sequence[PerfResult]) -> None:
        """Decide every metric still undecided on the blocks so far (one per pair and arm)."""
        self.streaming = any(b.stream is not None for b in (*ref, *cand))
        pairs = min(len(ref), len(cand))
        for metric in self.metrics:
            known = self.decisions.get(metric)
            if metric in self.futile or (
                known is not None and (known.decided or known.units == pairs)
            ):
                continue
            base = _median(block_values(ref, metric))
            effect = self.gate.min_effect.get(metric, 0.0)
            floor = self.gate.floor.get(metric, 0.0)
            target = smallest_change(self.gate, metric, base)
            decision: PairedDecision | None
            if metric in POOLED:
                decision = decide_pooled(
                    [raw_values(b, metric) for b in ref],
                    [raw_values(b, metric) for b in cand],
                    POOLED[metric],
                    looks=self.looks,
                    alpha=self.gate.alpha,
                    effect=effect,
                    target=target,
                    floor=floor,
                )
            else:
                x = log_ratios(block_values(ref, metric), block_values(cand, metric))
                if len(x) < 2:
                    continue
                change = math.expm1(float(np.mean(x)))
                decision = decide(
                    x,
                    higher_is_worse=metrics.BY_NAME[metric].higher_is_worse,
                    looks=self.looks,
                    alpha=self.gate.alpha,
                    effect=effect,
                    target=target,
                    big_enough=base is None or abs(base * change) >= floor,
                )
            if decision is not None:
                self.decisions[metric] = decision
                self._check_futility(metric, decision, pairs, effect, target)

    def _check_futility(
        self, metric: str, d: PairedDecision, pairs: int, effect: float, target: float
    ) -> None:
        """Give a metric up (inconclusive now, not at the end of the budget) when even the
        last planned look could not decide it: its minimum detectable effect projected to
        the last look (this look's spread, the last look's pairs and boundary) is above the
        target, and its estimate shows no regression of the minimum effect. Stopping toward
        "inconclusive" never adds a false alarm or a false pass; it only spares the budget
        that could not have bought an answer."""
        last = self.looks[-1]
        if d.decided or pairs >= last or d.units < MIN_UNITS:
            return
        worse = d.change if metrics.BY_NAME[metric].higher_is_worse else -d.change
        if worse >= effect:
            return  # a regression may be on its way: keep measuring
        c = nominal_t(pocock_constant(self.looks, self.gate.alpha), last - 1)
        se = d.sd / math.sqrt(last)
        projected = math.expm1((c + float(student_t.ppf(POWER, last - 1))) * se)
        if projected > target:
            self.futile[metric] = projected

    @property
    def regressed(self) -> bool:
        """Some metric is decided as a regression."""
        return any(d.verdict == REGRESSION for d in self.decisions.values())

    @property
    def done(self) -> bool:
        """Every metric decided or given up, or one regressed (the test fails whatever the
        others say)."""
        if self.regressed:
            return True
        ds = [self.decisions.get(m) for m in self.metrics]
        return all(
            m in self.futile or (d is not None and d.decided)
            for m, d in zip(self.metrics, ds, strict=True)
        )

    def comparisons(
        self,
        ref: Sequence[PerfResult],
        cand: Sequence[PerfResult],
        *,
        pairs: int,
        elapsed_s: float,
        stopped: str,
    ) -> list[Comparison]:
        """The comparisons of every gated metric, in catalogue order, when the analysis ends."""
        self.streaming = self.streaming or any(b.stream is not None for b in (*ref, *cand))
        out: list[Comparison] = []
        for meta in metrics.GATED:
            metric = meta.name
            if metric in self.gate.disabled or meta.search_only or meta.colocation_only:
                continue
            if meta.streaming_only and not self.streaming:
                continue
            if meta.counts is not None:
                out.append(self._errors(ref, cand, metric))
                continue
            out.append(self._comparison(ref, cand, metric, pairs, elapsed_s, stopped))
        return out

    def _errors(
        self, ref: Sequence[PerfResult], cand: Sequence[PerfResult], metric: str
    ) -> Comparison:
        """Fisher's exact test once, at the end, at alpha / looks (Bonferroni over the looks
        the analysis could have stopped at: valid whichever it stopped at)."""
        meta = metrics.BY_NAME[metric]
        assert meta.counts is not None
        failed, total = meta.counts
        b = (sum(getattr(x, failed) for x in ref), sum(getattr(x, total) for x in ref))
        c = (sum(getattr(x, failed) for x in cand), sum(getattr(x, total) for x in cand))
        gate = dataclasses.replace(self.gate, alpha=self.gate.alpha / len(self.looks))
        comp = compare_errors(b, c, gate, mode="ab", metric=metric)
        return dataclasses.replace(comp, note=comp.note + f" (alpha/{len(self.looks)} looks)")

    def _comparison(
        self,
        ref: Sequence[PerfResult],
        cand: Sequence[PerfResult],
        metric: str,
        pairs: int,
        elapsed_s: float,
        stopped: str,
    ) -> Comparison:
        r = [v for v in block_values(ref, metric) if v is not None]
        c = [v for v in block_values(cand, metric) if v is not None]
        d = self.decisions.get(metric)
        base, cur = _median(r), _median(c)
        pooled = metric in POOLED
        if pooled:  # the figure the analysis compared: each arm's pooled percentile
            q = POOLED[metric]
            base = _pooled([raw_values(b, metric) for b in ref], q)
            cur = _pooled([raw_values(b, metric) for b in cand], q)
        if d is None:
            few = (
                f"; {metrics.BY_NAME[metric].short} is decided once each arm pooled "
                f"{MIN_POOLED_REQUESTS} requests"
                if pooled
                else ""
            )
            return Comparison(
                metric,
                INCONCLUSIVE,
                "ab",
                baseline=base,
                current=cur,
                note=f"too few pairs to decide ({pairs} pairs, {elapsed_s:.0f} s){few}; "
                f"raise --triton-perf-compare-budget-s",
            )
        short = metrics.BY_NAME[metric].short
        spread = (
            f"pooled over blocks, pair-bootstrap se {100 * d.sd / math.sqrt(d.units):.1f}%"
            if pooled
            else f"log-ratio sd {100 * d.sd:.1f}%"
        )
        boot = (
            f", bootstrap 95% [{_pct(d.bootstrap[0])}, {_pct(d.bootstrap[1])}]"
            if d.bootstrap
            else ""
        )
        interval = f"[{_pct(d.interval[0])}, {_pct(d.interval[1])}]"
        how = f"{METHOD}: {d.units} pairs, {spread}, interval {interval} (c={d.c:.2f}){boot}"
        verdict = d.verdict or INCONCLUSIVE
        if d.verdict is None:
            target = smallest_change(self.gate, metric, base)
            seen = (
                f"could only see >= {_pct(d.mde).lstrip('+')} on {short}"
                if math.isfinite(d.mde)
                else f"too few pairs for any change on {short}"
            )
            if metric in self.futile:
                why = (
                    f"given up after {d.units} pairs: even at the budget's last look "
                    f"({self.looks[-1]} pairs) it could only see >= "
                    f"{_pct(self.futile[metric]).lstrip('+')}"
                )
            elif stopped == "regression":
                why = "stopped at a regression of another metric"
            else:
                why = f"budget spent after {pairs} pairs ({elapsed_s:.0f} s)"
            how = (
                f"undecided: the interval {interval} is neither inside "
                f"+-{_pct(target).lstrip('+')} nor clear of 0; {seen}; {why}; {how}"
            )
        return Comparison(
            metric=metric,
            verdict=verdict,
            mode="ab",
            baseline=base,
            baseline_ci=median_ci(r),
            current=cur,
            current_ci=median_ci(c),
            change_pct=100.0 * d.change,
            p_value=d.p_value,
            note=how,
            mde_pct=100.0 * d.mde,
            change_ci=(100.0 * d.interval[0], 100.0 * d.interval[1]),
        )


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.median(present)) if present else None


def _pooled(blocks: Sequence[np.ndarray], q: float) -> float | None:
    """The pooled percentile, None when the blocks hold no value."""
    return pooled_quantile(blocks, q) if sum(len(b) for b in blocks) else None
