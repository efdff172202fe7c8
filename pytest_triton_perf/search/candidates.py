"""The candidates of a search: the cartesian product of the space applied to the committed
configuration, without the combinations that cannot be valid, and the committed
configuration itself (always ``<model>__cfg0``).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pytest_triton_perf.numbers import fmt
from pytest_triton_perf.search.config import (
    apply_values,
    config_diff,
    config_text,
    invalid_reason,
    same_config,
    values_of,
)
from pytest_triton_perf.search.objective import breaches
from pytest_triton_perf.server.variants import config_name

if TYPE_CHECKING:
    from pytest_triton_perf.capacity import CapacityResult
    from pytest_triton_perf.measure.result import PerfResult


@dataclass(frozen=True)
class Measurement:
    """One candidate measured at one rung."""

    rung: int
    final: bool
    objective: float | None
    figures: Mapping[str, Any]  # metric name -> value, as PerfResult.summary() names them
    breaches: tuple[str, ...]  # constraints broken (strictly at full length)
    result: PerfResult | None
    capacity: CapacityResult | None = None

    def line(self, arm: Arm, objective: str) -> str:
        """The progress line of ``arm`` measured here (a search's ``notify``)."""
        verdict = "ok" if not self.breaches else "breaks " + ", ".join(self.breaches)
        return (
            f"  {arm.name} rung {self.rung}{' (full length)' if self.final else ''}: "
            f"{objective} {fmt(self.objective)}, {verdict} [{arm.describe()}]"
        )


@dataclass
class Arm:
    """A candidate while the search runs (the final, frozen form is ``Candidate``)."""

    index: int
    name: str
    values: dict[str, Any]
    config: Any  # ModelConfig
    committed: bool
    config_pbtxt: str
    config_diff: str
    measurements: list[Measurement] = field(default_factory=list)
    status: str = "pending"  # then finalist, pruned, infeasible or failed
    note: str = ""
    #: The predictive strategy's: the queueing model's Prediction, and how the measurement
    #: compared with it (measured / predicted - 1; None: not verified).
    prediction: Any = None
    prediction_error: float | None = None
    prediction_held: bool | None = None
    checked_at: int | None = None  # the concurrency the prediction was checked at

    @property
    def last(self) -> Measurement | None:
        """The latest measurement, or None before the first."""
        return self.measurements[-1] if self.measurements else None

    def describe(self) -> str:
        """``instance_count=2, dynamic_batching=True`` (``committed`` appended)."""
        text = ", ".join(f"{k}={v}" for k, v in self.values.items())
        return f"{text} (committed)" if self.committed else text


@dataclass(frozen=True)
class Plan:
    """The arms to measure, and the combinations left out."""

    arms: tuple[Arm, ...]
    skipped: tuple[tuple[dict[str, Any], str], ...]  # values, why not valid
    merged: int  # combinations that gave a configuration already among the arms


def plan(model: str, space: Mapping[str, tuple[Any, ...]], committed: Any) -> Plan:
    """Every valid, distinct configuration of ``space`` applied to ``committed``; the
    committed configuration first, as ``<model>__cfg0`` (with the values it has for the
    space's keys, or the combination that gives exactly it)."""
    keys = list(space)
    committed_text = config_text(committed)
    arms = [
        Arm(
            0,
            config_name(model, 0),
            values_of(committed, keys),
            committed,
            True,
            committed_text,
            "",
        )
    ]
    skipped: list[tuple[dict[str, Any], str]] = []
    merged = 0
    for combo in itertools.product(*(space[k] for k in keys)):
        values = dict(zip(keys, combo, strict=True))
        config = apply_values(committed, values)
        why = invalid_reason(values, config)
        if why is not None:
            skipped.append((values, why))
            continue
        same = next((a for a in arms if same_config(a.config, config)), None)
        if same is not None:
            if same.committed and same.values != values:
                # The committed configuration is in the space: name it by that combination.
                same.values = values
            merged += 1
            continue
        index = len(arms)
        arms.append(
            Arm(
                index,
                config_name(model, index),
                values,
                config,
                False,
                config_text(config),
                config_diff(committed, config),
            )
        )
    return Plan(tuple(arms), tuple(skipped), merged)


def figures_of(result: PerfResult | None, capacity: float | None = None) -> dict[str, Any]:
    """A measurement's figures as ``PerfResult.summary()`` names them, with ``capacity``."""
    figures: dict[str, Any] = dict(result.summary()) if result is not None else {}
    figures["capacity"] = capacity
    return figures


def capacity_measurement(
    cap: CapacityResult, bounds: Mapping[str, float], rung: int, final: bool, tolerance: float
) -> Measurement:
    """A capacity as a measurement: the latency and error bounds hold at its load by
    construction; the other constraints of ``bounds`` are checked on the result there."""
    others = {k: v for k, v in bounds.items() if k not in cap.bounds}
    if cap.capacity is not None and cap.result is not None:
        figures = figures_of(cap.result, cap.capacity)
        found = breaches(figures, others, tolerance)
        return Measurement(rung, final, cap.capacity, figures, found, cap.result, cap)
    # A rate ramp's buckets are not levels: the first level measured says what broke.
    level = next((s for s in cap.steps if s.phase != "ramp"), None)
    first = level.result if level is not None else None
    figures = figures_of(first)
    # Not even the first level held the bounds: at full length that is a breach; a
    # short measurement prunes only when it clearly is one.
    if final:
        found = level.breached if level is not None else ("no level measured",)
    else:
        found = breaches(figures, cap.bounds, tolerance)
    return Measurement(rung, final, None, figures, tuple(found), first, cap)
