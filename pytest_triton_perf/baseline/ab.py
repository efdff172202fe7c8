"""Interleaved A/B measurement: reference and candidate windows alternate A B B A A B ...

Each block is one measurement window of one arm after a short warm-up. Machine drift (a
noisy neighbour, thermal state, a background job) hits both arms alike, so it cancels in
the comparison instead of showing up as a regression.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from pytest_triton_perf.measure.result import LatencyStats, PerfResult, WindowResult

#: Warm-up before every block after an arm's first: connections are new for each block.
BLOCK_WARMUP_S = 0.3


def abba_order(blocks: int) -> list[int]:
    """Arm of each block (0 = reference, 1 = candidate): A B B A A B B A ..., ``blocks`` each."""
    order: list[int] = []
    for i in range(blocks):
        order += [0, 1] if i % 2 == 0 else [1, 0]
    return order


def merge_blocks(blocks: list[PerfResult]) -> PerfResult:
    """One result from an arm's blocks: windows concatenated, latencies pooled (never
    averaged percentiles), counts summed, memory peaks kept."""
    first = blocks[0]
    windows: list[WindowResult] = []
    for b in blocks:
        for w in b.windows:
            windows.append(dataclasses.replace(w, index=len(windows)))
    latencies = np.concatenate([b.latencies_ms for b in blocks])
    duration = sum(w.duration_s for w in windows)
    inferences = sum(w.inferences for w in windows)

    def peak(values: list[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return max(present) if present else None

    errors = [b.first_error for b in blocks if b.first_error]
    return dataclasses.replace(
        first,
        throughput=inferences / duration if duration > 0 else 0.0,
        latency_ms=LatencyStats.from_samples(latencies),
        requests=sum(b.requests for b in blocks),
        errors=sum(b.errors for b in blocks),
        windows=tuple(windows),
        duration_s=duration,
        stable=all(b.stable for b in blocks),
        server=None,  # statistics deltas per block do not add up to one meaningful figure
        gpu_memory_mb=peak([b.gpu_memory_mb for b in blocks]),
        cpu_memory_mb=peak([b.cpu_memory_mb for b in blocks]),
        first_error=errors[0] if errors else None,
        latencies_ms=latencies,
    )


def measure_ab(
    run: Callable[..., PerfResult],
    *,
    reference: str,
    candidate: str,
    blocks: int,
    warmup_s: float,
    window_s: float,
    **kwargs: Any,
) -> tuple[PerfResult, PerfResult]:
    """Measure ``reference`` and ``candidate`` in interleaved one-window blocks.

    ``run`` is the engine's ``measure`` bound to a server; returns (reference, candidate).
    """
    from pytest_triton_perf.measure.engine import MeasureSettings

    results: tuple[list[PerfResult], list[PerfResult]] = ([], [])
    names = (reference, candidate)
    for arm in abba_order(blocks):
        warm = warmup_s if not results[arm] else min(warmup_s, BLOCK_WARMUP_S)
        settings = MeasureSettings(warmup_s=warm, windows=1, window_s=window_s, max_windows=1)
        results[arm].append(run(names[arm], settings=settings, **kwargs))
    ref, cand = merge_blocks(results[0]), merge_blocks(results[1])
    # The reference is served under a derived name: report it under the model's own name.
    ref = dataclasses.replace(
        ref, model=candidate, workload=dataclasses.replace(ref.workload, model=candidate)
    )
    return ref, cand
