"""Predict, then verify: the default strategy of a capacity search over concurrency.

1. **Probe** every candidate briefly at low load (about one request per instance, and one
   full batch per instance where dynamic batching forms batches): the measured service
   time, overhead and batch sizes feed the queueing model of :mod:`.queueing`, which
   predicts the candidate's capacity under the SLA's latency bounds and the concurrency
   where it is reached.
2. **Verify** in the order of the predictions: the candidate is measured at full length at
   its predicted concurrency, and only there. The prediction holds when that level keeps
   every bound and its throughput is within :data:`TOLERANCE` of the predicted capacity;
   the measured throughput is then the candidate's capacity.
3. **Fall back** to the capacity search at full length (``find_capacity``, growth and
   bisection, starting from the predicted level) for a candidate whose measurement
   disagrees with its prediction: the model was wrong for it, and the search says so.
4. **Stop** as soon as no prediction left can beat the best capacity measured, even if it
   were :data:`TOLERANCE` too pessimistic: those candidates are pruned on their prediction
   (reported beside it). The committed configuration is verified too when the drift gate
   (``max_config_gap``) needs its figure.

The flow is pure: the runner gives the callables that load, measure and unload.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pytest_triton_perf.numbers import fmt
from pytest_triton_perf.search.candidates import Arm

#: How far a measurement may be from its prediction (relative, either way) and still
#: confirm it; beyond it, the candidate's capacity is searched the long way. Also the
#: margin by which a prediction must fall short of the best measured capacity to be pruned.
TOLERANCE = 0.15


@dataclass(frozen=True)
class Steps:
    """What the flow asks of the runner. ``probe(arm)`` measures at low load and returns
    the predicted capacity (None: predicted to break a bound even at concurrency 1; the
    arm failed: its status says so); ``verify(arm)`` measures at the predicted level and
    returns whether the prediction held; ``fallback(arm)`` searches the capacity at full
    length; ``release(arms)`` unloads arms no longer needed."""

    probe: Callable[[Arm], float | None]
    verify: Callable[[Arm], bool]
    fallback: Callable[[Arm], None]
    release: Callable[[Sequence[Arm]], None]


def could_beat(predicted: float | None, best: float | None) -> bool:
    """Whether a prediction could still beat the ``best`` measured capacity, were the
    prediction :data:`TOLERANCE` too low."""
    if best is None:
        return True
    return predicted is not None and predicted * (1 + TOLERANCE) >= best


def run_predictive(
    arms: Sequence[Arm],
    steps: Steps,
    *,
    verify_committed: bool,
    notify: Callable[[str], None] = lambda line: None,
) -> int:
    """Probe, predict, verify (see the module's docstring); sets each arm's status and
    note. Returns how many candidates were pruned on their prediction."""
    predicted: dict[int, float | None] = {}
    for arm in arms:
        value = steps.probe(arm)
        if arm.status == "failed":
            continue
        predicted[arm.index] = value
    live = [a for a in arms if a.index in predicted]
    order = sorted(live, key=lambda a: (-(predicted[a.index] or 0.0), not a.committed, a.index))
    # Whatever cannot beat even the top prediction measured TOLERANCE low is not needed
    # loaded any more (the committed one stays when the drift gate needs its figure).
    top = predicted[order[0].index] if order else None
    floor = None if top is None else top * (1 - TOLERANCE)
    steps.release(
        [
            a
            for a in order
            if not could_beat(predicted[a.index], floor) and not (a.committed and verify_committed)
        ]
    )
    best: float | None = None
    pruned = 0
    for arm in order:
        value = predicted[arm.index]
        needed = arm.committed and verify_committed
        if not needed and not could_beat(value, best):
            arm.status = "pruned"
            arm.note = (
                f"pruned on its prediction: capacity {fmt(value)} predicted, "
                f"+{TOLERANCE:.0%} would not reach the best measured {fmt(best)}"
            )
            notify(f"  {arm.name}: {arm.note}")
            pruned += 1
            steps.release([arm])
            continue
        held = value is not None and steps.verify(arm)
        if not held and arm.status != "failed":
            steps.fallback(arm)
        steps.release([arm])
        if arm.status == "failed":
            continue
        last = arm.last
        assert last is not None
        if last.breaches:
            arm.status = "infeasible"
            arm.note = _join(arm.note, f"breaks {', '.join(last.breaches)} at full length")
            continue
        arm.status = "finalist"
        if last.objective is not None and (best is None or last.objective > best):
            best = last.objective
    return pruned


def _join(first: str, second: str) -> str:
    return f"{first}; {second}" if first else second
