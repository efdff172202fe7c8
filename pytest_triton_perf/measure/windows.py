"""Windows: assignment of completed requests, per-window and pooled figures, stability,
and the ramp before the first window.

A request belongs to the window in which it completed (perf_analyzer's rule). Window
durations are the measured boundary-to-boundary times, not the nominal length.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pytest_triton_perf.load.recorder import Records
from pytest_triton_perf.measure.result import LatencyStats, WindowResult
from pytest_triton_perf.measure.stats import nearest_rank

#: Windows looked at by the stability rule (hard-coded in perf_analyzer as well).
STABILITY_WINDOWS = 3


def assign_windows(end_ns: np.ndarray, boundaries_ns: Sequence[int]) -> np.ndarray:
    """Window index of each completion time; -1 before the first boundary or after the last.

    Window ``k`` is ``[boundaries[k], boundaries[k+1])``.
    """
    b = np.asarray(boundaries_ns, dtype=np.int64)
    idx = np.searchsorted(b, np.asarray(end_ns, dtype=np.int64), side="right") - 1
    idx[(idx < 0) | (idx >= len(b) - 1)] = -1
    return idx


def latencies_ms(records: Records) -> np.ndarray:
    """Latencies (ms) of the successful requests; failed requests have no latency figure."""
    return records.latency_ns[records.ok].astype(np.float64) / 1e6


@dataclass(frozen=True)
class Pooled:
    """Figures of several windows taken together (raw latencies pooled, never averaged)."""

    requests: int
    errors: int
    inferences: int
    duration_s: float
    throughput: float
    latency_ms: LatencyStats | None
    latencies_ms: np.ndarray
    first_error: str | None


def window_results(
    records: Records, boundaries_ns: Sequence[int], batch_size: int
) -> tuple[WindowResult, ...]:
    """One WindowResult per pair of consecutive boundaries."""
    idx = assign_windows(records.end_ns, boundaries_ns)
    out = []
    for k in range(len(boundaries_ns) - 1):
        mask = idx == k
        ok = records.ok[mask]
        requests = int(mask.sum())
        successes = int(ok.sum())
        duration = (boundaries_ns[k + 1] - boundaries_ns[k]) / 1e9
        inferences = successes * batch_size
        lat = records.latency_ns[mask][ok].astype(np.float64) / 1e6
        out.append(
            WindowResult(
                index=k,
                duration_s=duration,
                requests=requests,
                errors=requests - successes,
                inferences=inferences,
                throughput=inferences / duration if duration > 0 else 0.0,
                latency_ms=LatencyStats.from_samples(lat),
            )
        )
    return tuple(out)


def pool(records: Records, boundaries_ns: Sequence[int], batch_size: int) -> Pooled:
    """Pooled figures over the whole span ``[boundaries[0], boundaries[-1])``."""
    span = records.between(boundaries_ns[0], boundaries_ns[-1])
    requests = len(span)
    successes = int(span.ok.sum())
    duration = (boundaries_ns[-1] - boundaries_ns[0]) / 1e9
    lat = latencies_ms(span)
    return Pooled(
        requests=requests,
        errors=requests - successes,
        inferences=successes * batch_size,
        duration_s=duration,
        throughput=successes * batch_size / duration if duration > 0 else 0.0,
        latency_ms=LatencyStats.from_samples(lat),
        latencies_ms=lat,
        first_error=span.first_error(),
    )


def max_over_min_within(values: Sequence[float], pct: float) -> bool:
    """True when the largest value is at most ``1 + pct/100`` times the smallest, all > 0."""
    if not values or min(values) <= 0:
        return False
    return max(values) / min(values) <= 1 + pct / 100.0


def is_stable(
    windows: Sequence[WindowResult],
    stability_pct: float,
    *,
    count: int = STABILITY_WINDOWS,
) -> bool:
    """perf_analyzer's stability rule over the last ``count`` windows.

    As ``InferenceProfiler::DetermineStability`` in perf_analyzer's
    ``src/inference_profiler.cc`` (with ``IsInferWindowStable`` and
    ``IsLatencyWindowStable``; ``stability_window`` is 3, ``--stability-percentage``
    defaults to 10): no window without throughput, max/min of the windows' throughput
    <= 1 + ``stability_pct``/100, and the same for their average latency (perf_analyzer's
    stabilising latency unless ``--percentile`` is given). A window without a successful
    request has no latency and is never stable. One difference: perf_analyzer needs 3
    windows, while fewer than ``count`` (when fewer were asked for) are judged on those
    there are (at least one).

    Why the average and not p99: per-window p99 of short windows is a handful of samples
    and flips from window to window on a steady server; the rule is there to detect drift
    (warm-up, throttling), which throughput and mean latency show with little sampling
    noise. The tail is gated on the pooled latencies, with the window-to-window spread
    accounted for by the gate's statistics.
    """
    last = list(windows[-count:])
    if not last:
        return False
    averages = [w.latency_ms.avg for w in last if w.latency_ms is not None]
    if len(averages) < len(last):
        return False
    return max_over_min_within([w.throughput for w in last], stability_pct) and (
        max_over_min_within(averages, stability_pct)
    )


#: Percentile of the warm-up's request latencies that sizes the ramp (:func:`ramp_s`).
RAMP_PERCENTILE = 99.0
#: Longest ramp (s), whatever the warm-up saw. The ramp waits out a latency (2 s covers the
#: end-to-end latency of the streaming text models this plugin measures in short windows);
#: a longer warm-up latency is an overloaded server (an open loop above its capacity, whose
#: queue grows through the warm-up) or a cold start, which waiting longer would not settle.
#: Never longer than one window either: the ramp then costs at most one window's time.
RAMP_MAX_S = 2.0


def ramp_s(warm_up: Records, steady_from_ns: int, window_s: float) -> float:
    """How long (s) the load runs after its restart before the first window opens: the
    :data:`RAMP_PERCENTILE` latency of the warm-up's successful requests that completed
    from ``steady_from_ns`` on (the drain included; the first part of a warm-up has its
    cold start: lazy initialisation, connections), capped at :data:`RAMP_MAX_S` and
    ``window_s``. For end-to-end latency of streaming requests that is the request latency.

    Why: a request belongs to the window in which it completes, and after the restart
    nothing completes before one latency, so a first window opened at once reads low, by
    about rate x mean latency requests; opened after the ramp, only requests slower than it
    are missing from the first window. 0 when the warm-up answered nothing (nothing to size
    it from; failed requests only say how fast the server refuses)."""
    steady = warm_up.between(steady_from_ns, np.iinfo(np.int64).max)
    lat = latencies_ms(steady)
    if len(lat) == 0:
        lat = latencies_ms(warm_up)
    if len(lat) == 0:
        return 0.0
    return max(0.0, min(nearest_rank(np.sort(lat), RAMP_PERCENTILE) / 1e3, RAMP_MAX_S, window_s))
