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
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from pytest_triton_perf.numbers import fmt
from pytest_triton_perf.search.candidates import Arm
from pytest_triton_perf.search.objective import MAXIMISE

#: Growth of the measurement per rung, and the share kept (1 / ETA).
ETA = 3
#: Challengers always kept after a rung (with the committed configuration).
MIN_KEEP = 2
STRATEGIES = ("halving", "grid")

#: Measures ``arm`` at ``rung`` (``final``: at full length), appending to its measurements,
#: or marks it failed.
Evaluate = Callable[[Arm, int, bool], None]


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
                _settle(arm, rung)
            return pruned
        pruned += _prune(active, rung, objective, notify)
        active = [a for a in active if a.committed or a.status == "pending"]
        rung += 1


def _settle(arm: Arm, rung: int) -> None:
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


def rank(arms: Sequence[Arm], objective: str) -> list[tuple[Arm, int | None]]:
    """Arms best first: finalists by objective, then the pruned (latest rung first), the
    infeasible, the failed; with a rank for the finalists and the pruned."""
    key = _sort_key(objective)

    def rung(arm: Arm) -> int:
        return arm.last.rung if arm.last is not None else -1

    groups = [
        sorted((a for a in arms if a.status == "finalist"), key=key),
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
