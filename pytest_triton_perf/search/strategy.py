"""How a search spends its measurements: successive halving (the default) or a grid.

**Successive halving** (Jamieson & Talwalkar, "Non-stochastic Best Arm Identification and
Hyperparameter Optimization", AISTATS 2016): every candidate is measured briefly (rung 0);
the best third on the objective among those within the SLA go on (at least
:data:`MIN_KEEP`), the others are pruned; each further rung measures the survivors ``ETA``
times longer, until at most :data:`MIN_KEEP` challengers are left, which are measured at full
length (the final rung). A short rung prunes on a constraint only when it is clearly broken
(see ``objective.SHORT_TOLERANCE``); the final rung checks strictly. The committed
configuration is never pruned: it is measured at every rung up to full length, so that the
gap between the best and the committed configuration compares two full-length figures.

**Grid**: every candidate at full length (brute force, Model Analyzer's way).

**Predict** (the default for a capacity over concurrency): see ``search.predictive``.
**Race** (candidates loaded together, measured in interleaved rounds): see ``search.race``.

**Ties**: when the best two finalists are within the measurement's noise on the objective
(:func:`tie_break`), the search says so and ranks them by a secondary objective: less GPU
memory (where both are measured and differ by more than :data:`MEMORY_MARGIN`), then
fewer instances, then the committed configuration, then the space's order.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pytest_triton_perf.measure.engine import MeasureSettings
from pytest_triton_perf.numbers import fmt
from pytest_triton_perf.search.candidates import Arm
from pytest_triton_perf.search.config import instance_count
from pytest_triton_perf.search.objective import MAXIMISE

#: Growth of the measurement per rung, and the share kept (1 / ETA).
ETA = 3
#: Challengers always kept after a rung (with the committed configuration).
MIN_KEEP = 2
STRATEGIES = ("predict", "race", "halving", "grid")
#: The smallest difference between two objectives that is not called a tie, whatever the
#: windows say (two copies of one configuration differ by this much on these machines).
TIE_FLOOR = 0.03
#: GPU memory figures closer than this (relative) do not rank a tie.
MEMORY_MARGIN = 0.05
#: A rung-0 measurement: warm-up, windows and window length at most these.
SHORT_WARMUP_S = 0.2
SHORT_WINDOWS = 2
SHORT_WINDOW_S = 0.3

#: Measures ``arm`` at ``rung`` (``final``: at full length), appending to its measurements,
#: or marks it failed.
Evaluate = Callable[[Arm, int, bool], None]


def rung0_settings(full: MeasureSettings) -> MeasureSettings:
    """Rung 0's settings: at most 2 windows of 0.3 s after 0.2 s of warm-up, never
    extended for stability, and never longer than ``full``."""
    windows = min(full.windows, SHORT_WINDOWS)
    return MeasureSettings(
        warmup_s=min(full.warmup_s, SHORT_WARMUP_S),
        windows=windows,
        window_s=min(full.window_s, SHORT_WINDOW_S),
        max_windows=windows,
        stability_pct=full.stability_pct,
        drain_timeout_s=full.drain_timeout_s,
    )


def rung_settings(short: MeasureSettings, full: MeasureSettings, rung: int) -> MeasureSettings:
    """A short rung's settings: rung 0's windows, ``ETA`` times longer per rung, at most
    ``full``'s."""
    return MeasureSettings(
        warmup_s=short.warmup_s,
        windows=short.windows,
        window_s=min(full.window_s, short.window_s * ETA**rung),
        max_windows=short.max_windows,
        stability_pct=short.stability_pct,
        drain_timeout_s=short.drain_timeout_s,
    )


def nominal_s(settings: MeasureSettings) -> float:
    """The seconds one measurement with ``settings`` takes at least (warm-up and windows)."""
    return settings.warmup_s + settings.windows * settings.window_s


def halving_s(challengers: int, short: MeasureSettings, full: MeasureSettings) -> float:
    """The seconds successive halving measures for (nominal, when nothing breaks the SLA):
    every rung's arms, the committed configuration among them, the last at full length."""
    counts = []
    while challengers > MIN_KEEP:
        counts.append(challengers + 1)
        challengers = max(MIN_KEEP, math.ceil(challengers / ETA))
    counts.append(challengers + 1)
    last = len(counts) - 1
    return sum(
        n * nominal_s(full if rung == last else rung_settings(short, full, rung))
        for rung, n in enumerate(counts)
    )


def _sort_key(objective: str) -> Callable[[Arm], tuple[bool, float, bool, int]]:
    """Best first: a measured objective before none, then by value, the committed
    configuration first on a tie, then in the space's order."""
    sign = -1.0 if MAXIMISE[objective] else 1.0

    def key(arm: Arm) -> tuple[bool, float, bool, int]:
        value = arm.last.objective if arm.last is not None else None
        return (value is None, sign * (value or 0.0), not arm.committed, arm.index)

    return key


def run_strategy(
    strategy: str,
    arms: Sequence[Arm],
    evaluate: Evaluate,
    objective: str,
    notify: Callable[[str], None] = lambda line: None,
) -> int:
    """Measure ``arms`` by ``strategy``; sets each arm's status and note. Returns how many
    were pruned."""
    active = list(arms)
    rung = 0
    pruned = 0
    while True:
        challengers = [a for a in active if not a.committed]
        final = strategy == "grid" or len(challengers) <= MIN_KEEP
        for arm in active:
            evaluate(arm, rung, final)
        active = [a for a in active if a.status != "failed"]
        if final:
            for arm in active:
                settle(arm)
            return pruned
        pruned += _prune(active, rung, objective, notify)
        active = [a for a in active if a.committed or a.status == "pending"]
        rung += 1


def settle(arm: Arm) -> None:
    """After the final rung: within the SLA (finalist) or not (infeasible)."""
    last = arm.last
    assert last is not None
    if last.breaches:
        arm.status = "infeasible"
        arm.note = _join(arm.note, f"breaks {', '.join(last.breaches)} at full length")
    else:
        arm.status = "finalist"


def _prune(arms: list[Arm], rung: int, objective: str, notify: Callable[[str], None]) -> int:
    """After a short rung: mark the clearly infeasible and the dominated challengers."""
    measured = [a for a in arms if not a.committed]
    for arm in measured:
        assert arm.last is not None
        if arm.last.breaches:
            arm.status = "infeasible"
            arm.note = f"clearly breaks {', '.join(arm.last.breaches)} at rung {rung}"
            notify(f"  {arm.name}: infeasible at rung {rung} ({arm.note})")
    feasible = sorted((a for a in measured if a.status == "pending"), key=_sort_key(objective))
    keep = max(MIN_KEEP, math.ceil(len(measured) / ETA))
    for position, arm in enumerate(feasible[keep:], start=keep + 1):
        assert arm.last is not None
        arm.status = "pruned"
        arm.note = (
            f"pruned at rung {rung}: {objective} {fmt(arm.last.objective)}, "
            f"#{position} of {len(feasible)} within the SLA (kept the best {keep})"
        )
        notify(f"  {arm.name}: {arm.note}")
    return max(0, len(feasible) - keep)


def noise(arm: Arm) -> float:
    """The relative standard error of an arm's last objective, from the throughput of its
    windows (for a capacity or throughput; 0 where there is nothing to tell)."""
    last = arm.last
    if last is None or last.result is None or not last.objective:
        return 0.0
    rates = [w.throughput for w in last.result.windows if w.throughput > 0]
    if len(rates) < 2:
        return 0.0
    mean = statistics.fmean(rates)
    return statistics.stdev(rates) / mean / math.sqrt(len(rates)) if mean > 0 else 0.0


@dataclass(frozen=True)
class Tie:
    """The best two finalists within noise of each other, and how they were ranked."""

    first: Arm
    second: Arm
    difference: float  # relative, on the objective
    margin: float  # what the noise allows
    by: str  # the secondary objective that decided

    def describe(self) -> str:
        """One line for the reports."""
        return (
            f"tie: {self.first.name} and {self.second.name} are {self.difference:.1%} apart "
            f"on the objective, within the measurement's noise ({self.margin:.1%}); "
            f"ranked by {self.by}"
        )


def _secondary(a: Arm, b: Arm) -> tuple[Arm, Arm, str]:
    """(first, second, by what) of two tied arms."""
    ma, mb = (x.last.figures.get("gpu_memory_mb") if x.last else None for x in (a, b))
    if ma is not None and mb is not None and abs(ma - mb) > MEMORY_MARGIN * max(ma, mb):
        return (a, b, "less GPU memory") if ma < mb else (b, a, "less GPU memory")
    ia, ib = instance_count(a.config), instance_count(b.config)
    if ia != ib:
        return (a, b, "fewer instances") if ia < ib else (b, a, "fewer instances")
    if a.committed != b.committed:
        by = "the committed configuration"
        return (a, b, by) if a.committed else (b, a, by)
    return (a, b, "the space's order") if a.index < b.index else (b, a, "the space's order")


def tie_break(finalists: Sequence[Arm], objective: str) -> Tie | None:
    """The tie of the best two of ``finalists`` (sorted best first), or None: the two
    differ by more than :data:`TIE_FLOOR` and by more than twice the combined standard
    error of their measurements."""
    if len(finalists) < 2:
        return None
    a, b = finalists[0], finalists[1]
    va = a.last.objective if a.last is not None else None
    vb = b.last.objective if b.last is not None else None
    if va is None or vb is None or max(abs(va), abs(vb)) == 0:
        return None
    difference = abs(va - vb) / max(abs(va), abs(vb))
    margin = max(TIE_FLOOR, 2 * math.hypot(noise(a), noise(b)))
    if difference > margin:
        return None
    first, second, by = _secondary(a, b)
    return Tie(first, second, difference, margin, by)


def rank(arms: Sequence[Arm], objective: str) -> list[tuple[Arm, int | None]]:
    """Arms best first: finalists by objective (a tie of the best two broken by
    :func:`tie_break`), then the pruned (latest rung first), the infeasible, the failed;
    with a rank for the finalists and the pruned."""
    key = _sort_key(objective)

    def rung(arm: Arm) -> int:
        return arm.last.rung if arm.last is not None else -1

    finalists = sorted((a for a in arms if a.status == "finalist"), key=key)
    tie = tie_break(finalists, objective)
    if tie is not None:
        finalists[:2] = [tie.first, tie.second]
    groups = [
        finalists,
        sorted((a for a in arms if a.status == "pruned"), key=lambda a: (-rung(a), key(a))),
        sorted((a for a in arms if a.status == "infeasible"), key=lambda a: (-rung(a), key(a))),
        [a for a in arms if a.status == "failed"],
    ]
    out: list[tuple[Arm, int | None]] = []
    for i, group in enumerate(groups):
        for arm in group:
            out.append((arm, len(out) + 1 if i < 2 else None))
    return out


def _join(first: str, second: str) -> str:
    return f"{first}; {second}" if first else second
