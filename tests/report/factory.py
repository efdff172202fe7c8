"""Measurement records built by hand from real ``PerfResult`` objects, for report tests.

Latencies are drawn from a seeded log-normal distribution, so every figure (percentiles,
windows, histogram) is computed the way the engine computes it, and is the same every run.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pytest_triton_perf.load.recorder import Records
from pytest_triton_perf.load.responses import ResponseRecords
from pytest_triton_perf.measure import streaming
from pytest_triton_perf.measure.result import (
    LatencyStats,
    PerfResult,
    Protocol,
    WindowResult,
    Workload,
)
from pytest_triton_perf.measure.windows import pool, window_results
from pytest_triton_perf.report.json_report import results_document
from pytest_triton_perf.sla import label
from pytest_triton_perf.verdicts import (
    Comparison,
    MeasurementRecord,
    SlaRecord,
    latency_histogram,
    stream_histograms,
)


def make_result(
    model: str = "sleepy",
    *,
    concurrency: int = 1,
    protocol: Protocol = "grpc",
    batch_size: int = 1,
    median_ms: float = 20.0,
    spread: float = 0.15,
    windows: int = 4,
    per_window: int = 200,
    errors: int = 0,
    gpu_memory_mb: float | None = None,
    cpu_memory_mb: float | None = 512.0,
    seed: int = 1,
) -> PerfResult:
    """A PerfResult of ``windows`` windows of ``per_window`` requests each."""
    rng = np.random.default_rng(seed)
    window_s = 2.0
    lat_windows = [rng.lognormal(np.log(median_ms), spread, per_window) for _ in range(windows)]
    results = []
    for i, lat in enumerate(lat_windows):
        results.append(
            WindowResult(
                index=i,
                duration_s=window_s,
                requests=per_window,
                errors=0,
                inferences=per_window * batch_size,
                # A closed loop of `concurrency` slots completes concurrency / latency per s.
                throughput=concurrency * batch_size * 1000.0 / float(lat.mean()),
                latency_ms=LatencyStats.from_samples(lat),
            )
        )
    pooled = np.concatenate(lat_windows)
    requests = windows * per_window + errors
    return PerfResult(
        model=model,
        version=None,
        workload=Workload(
            model=model,
            protocol=protocol,
            batch_size=batch_size,
            concurrency=concurrency,
        ),
        throughput=concurrency * batch_size * 1000.0 / float(pooled.mean()),
        latency_ms=LatencyStats.from_samples(pooled),
        requests=requests,
        errors=errors,
        windows=tuple(results),
        duration_s=windows * window_s,
        stable=True,
        gpu_memory_mb=gpu_memory_mb,
        cpu_memory_mb=cpu_memory_mb,
        unavailable=(("gpu_memory_mb", "no GPU"),) if gpu_memory_mb is None else (),
        latencies_ms=pooled,
    )


def stream_records(
    *,
    ttft_ms: float = 40.0,
    itl_ms: float = 10.0,
    responses: int = 16,
    concurrency: int = 4,
    windows: int = 4,
    window_s: float = 2.0,
    errors_every: int = 0,
    seed: int = 1,
    slow_itl_ms: float | None = None,
) -> tuple[Records, list[int]]:
    """Raw records of a streaming closed loop, as the loops write them: ``concurrency``
    slots, each request ``responses`` responses, TTFT and gaps log-normal around the given
    values (a request with one token per response); every ``errors_every``-th request
    failed. With ``slow_itl_ms`` every other request of each slot is slow: its gaps lie
    around that value instead. Returns the records and the window boundaries."""
    rng = np.random.default_rng(seed)
    end_ns, latency_ns, ok = [], [], []
    first, second, last, count, gaps = [], [], [], [], []
    horizon = int(windows * window_s * 1e9)
    n = 0
    for _ in range(concurrency):
        t = 0
        slow = False
        while True:
            ttft = int(rng.lognormal(np.log(ttft_ms), 0.05) * 1e6)
            gap_ms = slow_itl_ms if slow and slow_itl_ms is not None else itl_ms
            slow = not slow
            g = (rng.lognormal(np.log(gap_ms), 0.1, responses - 1) * 1e6).astype(np.int64)
            latency = ttft + int(g.sum())
            t += latency
            if t >= horizon:
                break
            n += 1
            end_ns.append(t)
            latency_ns.append(latency)
            ok.append(not (errors_every and n % errors_every == 0))
            first.append(ttft)
            second.append(ttft + int(g[0]) if responses > 1 else -1)
            last.append(latency)
            count.append(responses)
            gaps.append(g)
    order = np.argsort(end_ns, kind="stable")
    resp = ResponseRecords(
        first_ns=np.array(first, np.int64),
        second_ns=np.array(second, np.int64),
        last_ns=np.array(last, np.int64),
        count=np.array(count, np.int64),
        tokens=np.array(count, np.int64),
        gaps_ns=np.concatenate(gaps) if gaps else np.empty(0, np.int64),
    )
    records = Records(
        end_ns=np.array(end_ns, np.int64)[order],
        latency_ns=np.array(latency_ns, np.int64)[order],
        ok=np.array(ok, bool)[order],
        responses=ResponseRecords.merge([resp], order),
    )
    boundaries = [int(k * window_s * 1e9) for k in range(windows + 1)]
    return records, boundaries


def make_stream_result(
    model: str = "llm",
    *,
    token_output: str | None = "TOKEN",
    concurrency: int = 4,
    slo: dict[str, float] | None = None,
    **kwargs: Any,
) -> PerfResult:
    """A PerfResult of a streaming model, its figures computed by the engine's functions
    from :func:`stream_records` (``slo``: as ``measure(slo=...)`` gives them)."""
    records, boundaries = stream_records(concurrency=concurrency, **kwargs)
    pooled = pool(records, boundaries, 1)
    wins = streaming.with_windows(
        window_results(records, boundaries, 1), records, boundaries, token_output, slo
    )
    return PerfResult(
        model=model,
        version=None,
        workload=Workload(model=model, concurrency=concurrency),
        throughput=pooled.throughput,
        latency_ms=pooled.latency_ms,
        requests=pooled.requests,
        errors=pooled.errors,
        windows=wins,
        duration_s=pooled.duration_s,
        stable=True,
        latencies_ms=pooled.latencies_ms,
        first_error="llm: failed" if pooled.errors else None,
        stream=streaming.figures(records, boundaries, pooled.duration_s, token_output, slo),
    )


def make_record(
    result: PerfResult,
    *,
    test: str = "tests/test_gate.py::test_pass",
    index: int = 0,
    sla: tuple[SlaRecord, ...] = (),
    comparisons: tuple[Comparison, ...] = (),
    baseline: dict[str, Any] | None = None,
    sla_verdict: str | None = None,
    outcome: str = "passed",
    host_load: dict[str, float | None] | None = None,
) -> MeasurementRecord:
    """A record of ``result`` as the plugin builds it (``host_load``: the machine's load
    during the measurement, as the fixtures record it)."""
    if sla_verdict is None:
        if not sla:
            sla_verdict = "none"
        elif not all(s.passed for s in sla):
            sla_verdict = "FAIL"
        elif any(s.marginal for s in sla):
            sla_verdict = "marginal"
        else:
            sla_verdict = "pass"
    return MeasurementRecord(
        test=test,
        index=index,
        label=label(result),
        result=result.to_dict(),
        environment={
            "cpu_model": "Test CPU",
            "triton_version": "2.51.0",
            **({"host_load": host_load} if host_load else {}),
        },
        histogram=latency_histogram(result.latencies_ms),
        sla=sla,
        sla_verdict=sla_verdict,
        comparisons=comparisons,
        baseline=baseline or {},
        outcome=outcome,
        stream_histograms=stream_histograms(result.stream),
    )


def p99_sla(result: PerfResult, bound: float) -> SlaRecord:
    """The p99_ms bound checked against ``result``, with a made-up but plausible interval."""
    assert result.latency_ms is not None
    v = result.latency_ms.p99
    lo, hi = v * 0.95, v * 1.05
    return SlaRecord(
        key="p99_ms",
        bound=bound,
        value=v,
        passed=v <= bound,
        marginal=lo <= bound <= hi,
        interval=(lo, hi),
    )


def comparison(
    metric: str,
    verdict: str,
    baseline: float,
    current: float,
    p: float,
    note: str = "",
    mde: float | None = None,
) -> Comparison:
    """A history-mode comparison with intervals of +-3% (``mde``: its minimum detectable
    effect in percent)."""
    return Comparison(
        metric=metric,
        verdict=verdict,
        mode="history",
        baseline=baseline,
        baseline_ci=(baseline * 0.97, baseline * 1.03),
        current=current,
        current_ci=(current * 0.97, current * 1.03),
        change_pct=(current - baseline) / baseline * 100,
        p_value=p,
        note=note,
        mde_pct=mde,
    )


BASELINE_FILE = ".triton-perf/cpu-test_triton-2.51.0/test_gate.py__test_pass__sleepy.json"


def mixed_records() -> list[MeasurementRecord]:
    """Five records covering every verdict and an SLA breach.

    0: pass (SLA pass); 1: p99 regression +30% with a breached SLA; 2: improvement -12%;
    3: inconclusive; 4: no baseline.
    """
    base_result = make_result(median_ms=20.0, seed=2)
    base_hist = latency_histogram(base_result.latencies_ms)

    ok = make_result(seed=3)
    assert ok.latency_ms is not None
    r0 = make_record(
        ok,
        sla=(p99_sla(ok, 60.0),),
        comparisons=(
            comparison("p50_ms", "pass", ok.latency_ms.p50, ok.latency_ms.p50 * 1.01, 0.4, mde=3.8),
            comparison("p99_ms", "pass", ok.latency_ms.p99, ok.latency_ms.p99 * 1.02, 0.3, mde=7.3),
        ),
        host_load={"load_1m": 3.24, "steal_pct": 0.0},
        baseline={
            "mode": "history",
            "status": "found",
            "file": BASELINE_FILE,
            "revision": {
                "date": "2026-11-20T10:00:00Z",
                "git_commit": "0123456789abcdef",
                "config_hash": "c0ffee",
            },
            "histogram": base_hist,
        },
    )

    slow = make_result(median_ms=26.0, seed=4, protocol="http")
    assert slow.latency_ms is not None
    r1 = make_record(
        slow,
        test="tests/test_gate.py::test_slow",
        sla=(p99_sla(slow, 25.0),),
        comparisons=(
            comparison("p50_ms", "pass", 24.0, slow.latency_ms.p50, 0.02, mde=4.2),
            comparison("p99_ms", "regression", 26.5, slow.latency_ms.p99, 0.0004, mde=6.1),
            comparison("throughput", "pass", 100.0, slow.throughput, 0.5),
        ),
        baseline={
            "mode": "history",
            "status": "found",
            "file": BASELINE_FILE,
            "revision": {
                "date": "2026-11-20T11:00:00Z",
                "git_commit": "fedcba9876543210",
                "config_hash": "c0ffee",
            },
            "histogram": base_hist,
        },
        outcome="failed",
    )

    fast = make_result(median_ms=17.0, seed=5, concurrency=4)
    assert fast.latency_ms is not None
    r2 = make_record(
        fast,
        test="tests/test_gate.py::test_fast",
        comparisons=(
            comparison(
                "p99_ms", "improvement", fast.latency_ms.p99 / 0.877, fast.latency_ms.p99, 0.001
            ),
        ),
        baseline={"mode": "ab", "status": "found", "reference": base_result.to_dict()},
    )

    shaky = make_result(seed=6, concurrency=2)
    assert shaky.latency_ms is not None
    r3 = make_record(
        shaky,
        test="tests/test_gate.py::test_shaky",
        comparisons=(
            comparison(
                "p99_ms",
                "inconclusive",
                22.0,
                shaky.latency_ms.p99,
                0.04,
                note="windows vary by 35% (p99)",
                mde=42.0,
            ),
        ),
        baseline={"mode": "history", "status": "found", "file": BASELINE_FILE},
    )

    new = make_result(model="mlp", seed=7)
    r4 = make_record(
        new,
        test="tests/test_gate.py::test_new",
        baseline={"mode": "history", "status": "no baseline"},
    )
    return [r0, r1, r2, r3, r4]


def document(records: list[MeasurementRecord]) -> dict[str, Any]:
    """The results document of ``records``."""
    return results_document(
        records,
        environment={"cpu_model": "Test CPU", "triton_version": "2.51.0", "gpus": []},
        session={"started": "2026-11-21T19:00:00Z", "git_commit": "abc123"},
    )
