"""The bounds that limit a capacity and how a level is judged against them: the latency
keys, the SLO attainment of a capacity by goodput, and ``max_error_rate``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pytest_triton_perf import metrics, sla
from pytest_triton_perf.errors import ArgumentError
from pytest_triton_perf.measure.result import PerfResult

#: The load axes a capacity is searched over.
AXES = ("concurrency", "request_rate")
#: SLA keys that limit a capacity: the latency bounds and the error-rate bound. Throughput
#: and memory bounds are not properties of a load level's latency (memory is checked on the
#: result at capacity like any measurement).
LATENCY_KEYS = tuple(k for k, m in metrics.BY_SLA_KEY.items() if m.unit == "ms")
#: The bound of a capacity by goodput (``attainment=``): the share of requests that meet
#: every per-request SLO of ``slo=``.
ATTAINMENT_KEY = "min_slo_attainment"
#: The bounds a search can be searched under (at least one of them is needed).
SEARCH_KEYS = (*LATENCY_KEYS, ATTAINMENT_KEY)
LIMITING_KEYS = (*SEARCH_KEYS, "max_error_rate")


def latency_bounds(bounds: Mapping[str, float]) -> dict[str, float]:
    """The bounds that limit a capacity: latency keys, the SLO attainment of a capacity by
    goodput, and ``max_error_rate`` (0 unless given)."""
    out = {k: float(v) for k, v in bounds.items() if k in SEARCH_KEYS}
    out["max_error_rate"] = float(bounds.get("max_error_rate", 0.0))
    return out


def bound_metric(key: str) -> str:
    """The figure a limiting bound bounds: ``p99_ms`` -> ``p99_ms``, ``max_error_rate`` ->
    ``error_rate``, ``min_slo_attainment`` -> ``slo_attainment``."""
    return sla.BOUNDS[key].metric


def breaches(result: PerfResult, bounds: Mapping[str, float]) -> tuple[str, ...]:
    """The limiting bounds ``result`` breaks, as text starting with the bound's key
    (``"p99_ms 43.1 > 30"``, ``"min_slo_attainment 0.84 < 0.9 (95% interval 0.77-0.89;
    e2e_ms <= 60 missed by 16.0% of 120 requests)"``); empty: it holds. TTFT and ITL bound
    streaming models only."""
    figures = result.summary()
    limits = sla.applicable(latency_bounds(bounds), result, figures)
    return tuple(_breach_text(b, result) for b in sla.breaches(figures, limits))


def _breach_text(breach: sla.Breach, result: PerfResult) -> str:
    if breach.key == ATTAINMENT_KEY:
        slo = result.slo
        if slo is None:
            return f"{breach} (no per-request SLOs: give slo=...)"
        if breach.value is None:
            return f"{breach.key} unavailable (no request completed)"
        most = slo.most_missed().split(", ")[0]
        return f"{breach} ({attainment_text(result)}; {most})"
    return f"{breach} (no request succeeded)" if breach.value is None else str(breach)


def attainment_text(result: PerfResult) -> str:
    """``95% interval 0.77-0.89`` of a result's SLO attainment (``-`` without one)."""
    ci = result.slo_attainment_interval
    return f"95% interval {ci[0]:.2f}-{ci[1]:.2f}" if ci else "-"


def goodput_bounds(
    bounds: Mapping[str, float],
    *,
    attainment: Any = None,
    slo: Mapping[str, Any] | None = None,
    model: str = "",
) -> dict[str, float]:
    """``bounds`` with ``attainment`` (a capacity by goodput) as ``min_slo_attainment``, which
    it overrides; ArgumentError for an attainment outside (0, 1], or for an attainment (given
    here or by the marker's ``min_slo_attainment``) without per-request SLOs to attain.

    Both load axes are accepted: over ``request_rate`` this is DistServe's capacity (the
    highest rate at which the share holds, open loop); over ``concurrency`` the highest
    number of requests in flight at which it holds, as a closed-loop sweep of GenAI-Perf or
    AIPerf would find it."""
    out = dict(bounds)
    source = "the sla marker's min_slo_attainment"
    if attainment is not None:
        ok = isinstance(attainment, (int, float)) and not isinstance(attainment, bool)
        if not ok or not 0 < float(attainment) <= 1:
            raise ArgumentError(
                f"capacity(attainment={attainment!r}): a share of requests in (0, 1] is "
                f"accepted, e.g. attainment=0.9: at least 90% of requests meet every SLO"
            )
        out[ATTAINMENT_KEY] = float(attainment)
        source = f"attainment={attainment!r}"
    if ATTAINMENT_KEY in out and not slo:
        if attainment is None:
            source += f"={out[ATTAINMENT_KEY]:g}"
        who = f"capacity of model '{model}'" if model else "capacity"
        raise ArgumentError(
            f"{who}: {source} is the share of requests that meet the "
            f"per-request SLOs, but no SLOs were given: add slo={{'ttft_ms': 200, 'tpot_ms': "
            f"50, 'e2e_ms': 2000}} (any of ttft_ms, tpot_ms, e2e_ms; a streaming model)"
        )
    return out
