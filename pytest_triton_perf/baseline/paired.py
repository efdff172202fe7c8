"""Comparisons of the paired A/B analysis: the metric catalogue applied to interleaved blocks.

The statistics are in :mod:`pytest_triton_perf.baseline.sequential`; this module turns the
blocks of each arm into per-metric log-ratios, decides each gated metric at a look, and
writes the :class:`~pytest_triton_perf.verdicts.Comparison` records the reports show.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from pytest_triton_perf import metrics
from pytest_triton_perf.baseline.compare import (
    GateSettings,
    compare_errors_paired,
    smallest_change,
)
from pytest_triton_perf.baseline.epochs import (
    EpochEstimate,
    Offset,
    block_epochs,
    combine,
    pooled_epoch,
)
from pytest_triton_perf.baseline.sequential import (
    MIN_UNITS,
    MIN_UNITS_TO_PASS,
    PairedDecision,
    _decide,
    futility,
    min_pooled_requests,
    pooled_quantile,
)
from pytest_triton_perf.measure.result import PerfResult
from pytest_triton_perf.measure.stats import median_ci
from pytest_triton_perf.verdicts import IMPROVEMENT, INCONCLUSIVE, REGRESSION, Comparison

#: The method's name in notes and reports.
METHOD = (
    "paired log-ratios of ABBA blocks over load epochs (Huber's estimate per epoch), "
    "random-effects mean, Pocock repeated intervals, Holm"
)


def _pct(fraction: float) -> str:
    v = 100 * fraction
    return f"{v:+.1f}%" if abs(v) < 10 else f"{v:+.0f}%"


#: Latency percentiles decided over each arm's pooled blocks (their tail is too thin per
#: block): metric name -> percentile.
POOLED = {
    "p95_ms": 95.0,
    "p99_ms": 99.0,
    "ttft_p99_ms": 99.0,
    "itl_p99_ms": 99.0,
    "tpot_p99_ms": 99.0,
    "e2e_p99_ms": 99.0,
}
#: Tails decided one-sided (non-inferiority at their own margin): a regression, or a pass
#: when the change toward "worse" is bounded below the margin; never an improvement. On
#: shared cores a p99 sits between the fast body and a mode of scheduling stalls: it is
#: reported always, gated against a regression only.
ONE_SIDED = frozenset({"p99_ms", "ttft_p99_ms", "itl_p99_ms", "tpot_p99_ms", "e2e_p99_ms"})

#: Streaming figures by the prefix of their metric's name -> their raw values' field.
_STREAM_SAMPLES = {
    "ttft_": "ttft_samples_ms",
    "itl_": "itl_samples_ms",
    "tpot_": "tpot_samples_ms",
    "e2e_": "e2e_samples_ms",
}


def raw_values(block: PerfResult, metric: str) -> np.ndarray:
    """The raw values (ms) a pooled percentile of ``metric`` is taken over: the block's
    latencies, or for a streaming model its TTFTs or its gaps between responses."""
    for prefix, samples in _STREAM_SAMPLES.items():
        if metric.startswith(prefix):
            if block.stream is None:
                return np.empty(0)
            values: np.ndarray = getattr(block.stream, samples)
            return values
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


def split_epochs(
    blocks: Sequence[PerfResult], sizes: Sequence[int] | None
) -> list[Sequence[PerfResult]]:
    """An arm's blocks cut into its load epochs (``sizes``: pairs per epoch; None: one)."""
    if not sizes:
        return [blocks]
    out: list[Sequence[PerfResult]] = []
    at = 0
    for n in sizes:
        out.append(blocks[at : at + n])
        at += n
    return out


@dataclass
class PairedAnalysis:
    """The sequential paired analysis of one A/B measurement, look by look.

    ``looks`` are the planned unit counts of the looks: load epochs when the blocks come in
    several epochs, pairs when they come from one load (the boundary of every metric
    follows from them). ``offsets`` are the machine's calibrated per-load offset variances
    per metric (:mod:`pytest_triton_perf.baseline.calibration`).
    """

    gate: GateSettings
    looks: tuple[int, ...]
    offsets: Mapping[str, Offset] = dataclasses.field(default_factory=dict)
    decisions: dict[str, PairedDecision] = dataclasses.field(default_factory=dict)
    #: Whether the blocks come from a streaming model (TTFT and ITL are decided too); set by
    #: the first look.
    streaming: bool = False
    #: Whether the blocks have per-request SLOs (goodput and SLO attainment are decided
    #: too); set by the first look.
    slo: bool = False
    #: Metrics given up as undecidable within the budget -> why.
    futile: dict[str, str] = dataclasses.field(default_factory=dict)
    #: How each metric's offset variance was obtained at its last look.
    offset_how: dict[str, str] = dataclasses.field(default_factory=dict)
    #: What the looks count: "epochs" (several loads) or "pairs" (one load).
    unit: str = "pairs"
    #: Each epoch's pooled-percentile estimate by (metric, epoch, blocks of each arm).
    _pooled: dict[tuple[str, int, int, int], EpochEstimate | None] = dataclasses.field(
        default_factory=dict, repr=False
    )

    @property
    def metrics(self) -> tuple[str, ...]:
        """The gated metrics this analysis decides (the per-window ones not switched off)."""
        return tuple(
            m.name
            for m in metrics.GATED
            if m.per_window
            and not m.search_only
            and (self.streaming or not m.streaming_only)
            and (self.slo or not m.slo_only)
            and not m.colocation_only  # compared round by round (colocation.py)
            and m.name not in self.gate.disabled
        )

    def holm_size(self) -> int:
        """Holm's divisor: the gated metrics (error rate included) not yet rejected."""
        rejected = {m for m, d in self.decisions.items() if d.verdict in (REGRESSION, IMPROVEMENT)}
        errors = 0 if "error_rate" in self.gate.disabled else 1
        return max(1, len([m for m in self.metrics if m not in rejected]) + errors)

    def estimates(
        self,
        ref: Sequence[PerfResult],
        cand: Sequence[PerfResult],
        metric: str,
        epochs: Sequence[int] | None = None,
    ) -> list[EpochEstimate] | None:
        """Each epoch's estimate of ``metric``'s log-ratio (None: not enough data yet)."""
        r_epochs, c_epochs = split_epochs(ref, epochs), split_epochs(cand, epochs)
        if metric in POOLED:
            q = POOLED[metric]
            need = min_pooled_requests(q)
            have = min(
                sum(len(raw_values(b, metric)) for b in ref),
                sum(len(raw_values(b, metric)) for b in cand),
            )
            if have < need:
                return None
            out = []
            for i, (r, c) in enumerate(zip(r_epochs, c_epochs, strict=True)):
                # An epoch's blocks only grow: its bootstrap is done once per size, not
                # again at every later look.
                key = (metric, i, len(r), len(c))
                if key not in self._pooled:
                    self._pooled[key] = pooled_epoch(
                        [raw_values(b, metric) for b in r],
                        [raw_values(b, metric) for b in c],
                        q,
                        seed=1000 * i + len(r),
                    )
                e = self._pooled[key]
                if e is not None:
                    out.append(e)
            return out or None
        series = [
            log_ratios(block_values(r, metric), block_values(c, metric))
            for r, c in zip(r_epochs, c_epochs, strict=True)
        ]
        if sum(len(x) for x in series) < 2:
            return None
        return block_epochs([x for x in series if x])

    def look(
        self,
        ref: Sequence[PerfResult],
        cand: Sequence[PerfResult],
        epochs: Sequence[int] | None = None,
    ) -> None:
        """Decide every metric still undecided on the blocks so far (one per pair and arm;
        ``epochs``: the pairs of each load epoch, in order; None: one load)."""
        self.streaming = any(b.stream is not None for b in (*ref, *cand))
        self.slo = all(b.slo is not None for b in (*ref, *cand)) and bool(ref)
        several = bool(epochs) and len(epochs or ()) > 1
        self.unit = "epochs" if several else "pairs"
        units = len(epochs or ()) if several else min(len(ref), len(cand))
        holm = self.holm_size()
        for metric in self.metrics:
            known = self.decisions.get(metric)
            if metric in self.futile or (
                known is not None and (known.decided or known.units == units)
            ):
                continue
            est = self.estimates(ref, cand, metric, epochs)
            if est is None:
                continue
            offset = self.offsets.get(metric) if several else None
            comb = combine(est, offset)
            self.offset_how[metric] = comb.how
            if not math.isfinite(comb.se):
                continue
            effect = self.gate.min_effect.get(metric, 0.0)
            floor = self.gate.floor.get(metric, 0.0)
            base = (
                _pooled([raw_values(b, metric) for b in ref], POOLED[metric])
                if metric in POOLED
                else _median(block_values(ref, metric))
            )
            target = smallest_change(self.gate, metric, base)
            change = math.expm1(comb.mean)
            decision = _decide(
                comb.mean,
                comb.se,
                units,
                sd=comb.se * math.sqrt(max(1, units)),
                bootstrap=None,
                higher_is_worse=metrics.BY_NAME[metric].higher_is_worse,
                looks=self.looks,
                alpha=self.gate.alpha,
                effect=effect,
                target=target,
                big_enough=base is None or abs(base * change) >= floor,
                df=comb.df,
                reject_alpha=self.gate.alpha / holm,
                pass_alpha=self.gate.pass_alpha,
                one_sided=metric in ONE_SIDED,
                look=units,
                min_units=MIN_UNITS_TO_PASS if several else MIN_UNITS,
            )
            self.decisions[metric] = decision
            self._check_futility(metric, decision, units, effect, target, holm)

    def _check_futility(
        self, metric: str, d: PairedDecision, units: int, effect: float, target: float, holm: int
    ) -> None:
        """Give a metric up (inconclusive now, not at the end of the budget) only when
        neither answer can be reached by the budget's last look: a pass (its interval,
        at this spread and the last look's units, could not fit inside the margin) **and**
        a regression of the minimum effect (the interval's bound toward "worse" is already
        below the minimum effect, or the conditional power of a regression of the minimum
        effect is under :data:`FUTILITY_POWER`). Stopping toward "inconclusive" never adds a
        false alarm or a false pass; it only spares the budget that could not have bought
        an answer, and a regression that could still be caught is measured on."""
        if d.decided or not math.isfinite(d.se):
            return
        sign = 1.0 if metrics.BY_NAME[metric].higher_is_worse else -1.0
        reach = futility(
            sign * math.log1p(d.change),
            d.se,
            d.df,
            d.c,
            units=units,
            looks=self.looks,
            alpha=self.gate.alpha,
            holm=holm,
            effect=math.log1p(effect),
            margin=math.log1p(target),
            one_sided=metric in ONE_SIDED,
            pass_alpha=self.gate.pass_alpha,
        )
        if reach is not None:
            self.futile[metric] = (
                f"given up after {units} of {self.looks[-1]} {self.unit}: no pass could be "
                f"reached by the last look and a regression of "
                f"{_pct(effect).lstrip('+')} had {100 * reach:.0f}% conditional power"
            )

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
        self.slo = self.slo or (all(b.slo is not None for b in (*ref, *cand)) and bool(ref))
        out: list[Comparison] = []
        for meta in metrics.GATED:
            metric = meta.name
            if metric in self.gate.disabled or meta.search_only or meta.colocation_only:
                continue
            if meta.streaming_only and not self.streaming:
                continue
            if meta.slo_only and not self.slo:
                continue
            if meta.counts is not None:
                out.append(self._errors(ref, cand, metric))
                continue
            out.append(self._comparison(ref, cand, metric, pairs, elapsed_s, stopped))
        return out

    def _errors(
        self, ref: Sequence[PerfResult], cand: Sequence[PerfResult], metric: str
    ) -> Comparison:
        """The error rate per pair of blocks (errors come in bursts inside a block, so the
        pair is the unit: ``compare_errors_paired``), once, at the end, at alpha / (looks x
        Holm's divisor): Bonferroni over the looks the analysis could have stopped at, and
        the error rate's share of the measurement's family."""
        meta = metrics.BY_NAME[metric]
        assert meta.counts is not None
        failed, total = meta.counts
        r = [(int(getattr(x, failed)), int(getattr(x, total))) for x in ref]
        c = [(int(getattr(x, failed)), int(getattr(x, total))) for x in cand]
        # Bonferroni over the looks, and the error rate's Holm share of the family.
        return compare_errors_paired(
            r, c, self.gate, mode="ab", metric=metric, looks=len(self.looks) * self.holm_size()
        )

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
                f"{min_pooled_requests(POOLED[metric])} requests (10 beyond the percentile)"
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
        pooled_note = "pooled over blocks, " if pooled else ""
        offset = {
            "calibration": "offset from the stored calibration",
            "epochs": "offset from the spread between epochs (HKSJ)",
            "one epoch": "one load (offset not modelled)",
        }.get(self.offset_how.get(metric, ""), "")
        sides = "one-sided, non-inferiority" if metric in ONE_SIDED else "two-sided"
        interval = f"[{_pct(d.interval[0])}, {_pct(d.interval[1])}]"
        how = (
            f"{METHOD}: {d.units} {self.unit}, {pairs} pairs, {pooled_note}se "
            f"{100 * d.se:.1f}% on {d.df:.0f} df, {offset}, {sides}, interval {interval} "
            f"(c={d.c:.2f}), repeated p={d.p_value:.3g}"
        )
        verdict = d.verdict or INCONCLUSIVE
        if d.verdict is None:
            target = smallest_change(self.gate, metric, base)
            seen = (
                f"could only see >= {_pct(d.mde).lstrip('+')} on {short}"
                if math.isfinite(d.mde)
                else f"too few {self.unit} for any change on {short}"
            )
            if metric in self.futile:
                why = self.futile[metric]
            elif stopped == "regression":
                why = "stopped at a regression of another metric"
            else:
                why = f"budget spent after {pairs} pairs ({elapsed_s:.0f} s)"
            inside = (
                f"below +{_pct(target).lstrip('+')}"
                if metric in ONE_SIDED
                else f"inside +-{_pct(target).lstrip('+')}"
            )
            if self.offset_how.get(metric) == "epochs":
                why += (
                    "; a stored A/A calibration of this machine (triton-perf calibrate) "
                    "narrows the interval when the epochs are few"
                )
            how = (
                f"undecided: the interval {interval} is neither {inside} nor clear of 0; "
                f"{seen}; {why}; {how}"
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
