"""What a search optimises and under which constraints.

The objective is one figure per candidate: ``capacity`` (inferences/s within the SLA's
latency bounds, :func:`pytest_triton_perf.capacity.find_capacity`), ``throughput`` (at the
given load, maximised), ``p99_ms`` or ``gpu_memory_mb`` (at the given load, minimised).
Model Analyzer's names are accepted for them. The constraints are SLA keys (Model
Analyzer's names accepted, as in the ``sla`` marker), checked on every measurement.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any, Literal, cast

from pytest_triton_perf import metrics, sla
from pytest_triton_perf.errors import ArgumentError, ConfigError
from pytest_triton_perf.sla import BOUNDS, parse_marker

Objective = Literal["capacity", "throughput", "p99_ms", "gpu_memory_mb"]
#: Objective -> whether more is better.
MAXIMISE: dict[str, bool] = {
    "capacity": True,
    "throughput": True,
    "p99_ms": False,
    "gpu_memory_mb": False,
}
#: Model Analyzer's objective names (and the catalogue's short ones) -> ours.
ALIASES = {
    "perf_throughput": "throughput",
    "perf_latency_p99": "p99_ms",
    "p99": "p99_ms",
    "gpu_used_memory": "gpu_memory_mb",
}
#: Share beyond a bound that makes a short measurement "clearly" break it: a short rung
#: prunes on a breach only this large, since its figures are noisy (full length: strict).
SHORT_TOLERANCE = 0.2


def parse_objective(objective: Any) -> Objective:
    """``objective`` as one of :data:`MAXIMISE`'s names; ArgumentError naming the accepted
    ones otherwise."""
    name = ALIASES.get(objective, objective) if isinstance(objective, str) else objective
    if name in MAXIMISE:
        return cast(Objective, name)
    choices = [*MAXIMISE, *ALIASES]
    close = (
        difflib.get_close_matches(objective, choices, n=1, cutoff=0.5)
        if isinstance(objective, str)
        else []
    )
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ArgumentError(
        f"search objective {objective!r} is not accepted.{hint} Accepted: "
        f"{', '.join(MAXIMISE)} (Model Analyzer's {', '.join(ALIASES)} too)."
    )


def parse_sla(sla: Mapping[str, Any] | None) -> dict[str, float]:
    """The constraints as SLA keys -> bounds, Model Analyzer's names turned into ours;
    ArgumentError for an unknown key or a bad bound."""
    if sla is None:
        return {}
    if not isinstance(sla, Mapping):
        raise ArgumentError(
            f"search sla={sla!r}: a mapping of SLA key -> bound is accepted, e.g. {{'p99_ms': 30}}."
        )
    if "regression" in sla:
        raise ArgumentError(
            "search sla: 'regression' sets baseline comparisons, not a constraint; leave it out."
        )
    try:
        return parse_marker("search", (), sla)
    except ConfigError as e:
        raise ArgumentError(str(e)) from None


def breaches(
    figures: Mapping[str, Any], bounds: Mapping[str, float], tolerance: float = 0.0
) -> tuple[str, ...]:
    """The bounds ``figures`` break, as text (``"p99_ms 43.1 > 30"``), by
    :func:`pytest_triton_perf.sla.breaches`. With ``tolerance`` (a short measurement) only a
    breach beyond ``bound * (1 + tolerance)`` counts, and a missing figure does not."""
    found = sla.breaches(figures, bounds, tolerance=tolerance)
    return tuple(str(b) for b in found if b.value is not None or not tolerance)


def is_latency(key: str) -> bool:
    """Whether an SLA key bounds a latency (what a capacity is searched under)."""
    return BOUNDS[key].unit == "ms"


def capacity_keys() -> tuple[str, ...]:
    """SLA keys only a capacity search yields (``min_capacity``)."""
    return tuple(k for k, m in metrics.BY_SLA_KEY.items() if getattr(m, "search_only", False))


def objective_value(objective: str, figures: Mapping[str, Any]) -> float | None:
    """The objective's value among ``figures`` (None when it was not measured)."""
    value = figures.get(objective)
    return None if value is None else float(value)


def better(objective: str, a: float, b: float) -> bool:
    """Whether ``a`` is strictly better than ``b`` on ``objective``."""
    return a > b if MAXIMISE[objective] else a < b


def relative_gain(objective: str, best: float | None, committed: float | None) -> float | None:
    """How much better ``best`` is than ``committed``, relative to ``committed`` (> 0:
    better); None when either is missing or the committed value is 0."""
    if best is None or committed is None or committed == 0:
        return None
    gain = (best - committed) if MAXIMISE[objective] else (committed - best)
    return gain / abs(committed)
