"""The measurement engine: one call drives load against a model and returns a PerfResult.

Sequence of one measurement::

    warm-up (warmup_s) -> stop, drain -> statistics snapshot S0 -> memory sampler on
    -> restart the load at t_load -> ramp (ramp_s) -> first window opens at t0
    -> windows (at least `windows`, extended up to `max_windows` until stable)
    -> stop sending, drain (requests completing now are not counted) -> snapshot S1

The load pauses between warm-up and the first window so that S0 sees no request in flight,
and S1 is taken once the drain has finished: the server's request count over S0..S1 then
equals the client's count over the same span exactly (``requests + drained + ramp``).

The ramp: a request belongs to the window in which it completes, and after the restart
nothing completes before one latency, so a window opened at t_load would start cold and
read the throughput low, by about rate x mean latency requests (10% for a 200 ms
streaming model in 2 windows of 1 s). The first window opens once the load has run for
the warm-up's p99 latency (``measure.windows.ramp_s``: at most 2 s or one window, for a
group the longest of its models'), when requests complete at the steady rate. Requests
completing in the ramp are outside the windows, like the drained ones: the server counts
them (``ramp``, and so do its queue and compute statistics over S0..S1), the figures do
not. Without a warm-up (``warmup_s=0``, as the smoke check of ``--triton-perf-disable``)
there is nothing to size the ramp from: the first window opens at t_load, cold.

Closed loop (``concurrency``) or open loop (``request_rate``, constant or Poisson arrivals,
latency counted from the scheduled send time). The load runs in this process, or in several
worker processes when one cannot keep up (``workers``); either way windows are cut from the
raw records, so merged figures are exact.

A rate ramp (:func:`measure_ramp`, a capacity search's one pass; not the ramp above) is an
open loop whose rate rises through the run: no windows, but buckets of its scheduled send
times, judged as they fall due so that the ramp stops soon past the knee
(``measure.ramp``).

Several models at once (:func:`measure_group`, co-location): one driver per model in the same
event loop, warmed up, snapshotted and started together, so every model's windows share the
same boundaries (one window clock) and ``k``-th windows of two models cover the same time.
One run with several drivers rather than parallel runs: a single clock needs no
cross-thread barrier, and an interrupt stops every driver through the one loop.

Each step lives where its concern does: request encoding in ``load.inputs``, the event loop
and the load drivers in ``load``, Triton's statistics (and other models' traffic) in
``measure.server_stats``, memory in ``measure.memory``, GPU energy in ``measure.energy``,
windows and pooling in ``measure.windows``. The arguments are checked and the requests
encoded before anything is sent (:func:`prepare`, in ``measure.plan`` and
``measure.checks``; the keywords are ``measure.options.EngineOptions``); this module runs
the plan in order, and ``measure.summary`` makes what it saw into a result.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from typing_extensions import Unpack

from pytest_triton_perf.errors import ArgumentError, InputSpecError
from pytest_triton_perf.load.closed_loop import Supervisor
from pytest_triton_perf.load.driver import Driver, LocalDriver, PhaseStats
from pytest_triton_perf.load.loop import in_thread, run_coroutine
from pytest_triton_perf.load.recorder import Records
from pytest_triton_perf.load.shared_memory import SharedMemory
from pytest_triton_perf.load.workers import open_driver
from pytest_triton_perf.measure.energy import EnergyMeter, meter_for
from pytest_triton_perf.measure.memory import MemorySampler
from pytest_triton_perf.measure.options import EngineOptions
from pytest_triton_perf.measure.pipeline import assess
from pytest_triton_perf.measure.plan import Endpoints, MeasureSettings, Plan, prepare
from pytest_triton_perf.measure.ramp import RampBucket, RampPlan, RampRun
from pytest_triton_perf.measure.result import PerfResult
from pytest_triton_perf.measure.server_stats import StatsReader, breakdown
from pytest_triton_perf.measure.summary import (
    CLIENT_BOUND_CPU,
    Observed,
    generator_saturated,
    shared_memory_outcome,
    summarise,
    summarise_started,
)
from pytest_triton_perf.measure.windows import is_stable, ramp_s, window_results
from pytest_triton_perf.server.protocol import STATISTICS

#: How often the server handle is asked whether the server is still alive.
ALIVE_INTERVAL_S = 0.5
#: Most worker processes ``workers="auto"`` starts.
MAX_AUTO_WORKERS = 4


def measure(
    endpoints: Endpoints,
    model: str,
    *,
    settings: MeasureSettings = MeasureSettings(),
    **options: Unpack[EngineOptions],
) -> PerfResult:
    """Measure ``model`` under a closed loop (``concurrency``) or open loop
    (``request_rate``): :func:`prepare`'s arguments, run in a fresh event loop.

    Runs its own event loop, so it is called from synchronous code (or from any thread).
    Raises what :func:`prepare` raises, and ServerDiedError when the server goes away
    during the measurement.
    """
    plan = prepare(endpoints, model, settings=settings, **options)
    if plan.shm is not None:
        return _through_shared_memory(plan, *plan.shm)
    return run_coroutine(lambda: _measure_async([plan]))[0]


def measure_group(
    endpoints: Endpoints,
    loads: Mapping[str, Mapping[str, Any]],
    *,
    settings: MeasureSettings = MeasureSettings(),
) -> dict[str, PerfResult]:
    """Measure several models at the same time, in the same windows: ``loads`` maps each
    model to its own :func:`prepare` keywords (``concurrency``, ``request_rate``, ...);
    ``settings`` (warm-up, windows, stability) is the group's.

    One event loop drives one load driver per model (each in this process or in worker
    processes of its own); the warm-up, the statistics snapshots, the ramp (the longest
    that any model's warm-up calls for) and every window boundary are shared, so window
    ``k`` of each model covers the same span of time. The
    stability rule holds when every model's windows are stable. Each model's result is
    cut from its own records, as :func:`measure` does, names the others in
    ``together_with``, and does not count their requests as other traffic.
    """
    if not loads:
        raise ArgumentError("measure_group: no models to measure; give {model: {...}, ...}")
    plans = []
    for model, keywords in loads.items():
        if "settings" in keywords:
            raise ArgumentError(
                f"model '{model}': settings apply to the whole group (the same windows for "
                f"every model); pass settings= to measure_group"
            )
        if keywords.get("shared_memory", "none") != "none":
            raise ArgumentError(
                f"model '{model}': shared_memory is not available for models measured "
                f"together; measure it alone for its shared-memory figures"
            )
        plans.append(prepare(endpoints, model, settings=settings, **keywords))
    results = run_coroutine(lambda: _measure_async(plans))
    names = tuple(loads)
    return {
        name: dataclasses.replace(result, together_with=tuple(n for n in names if n != name))
        for name, result in zip(names, results, strict=True)
    }


def measure_ramp(
    endpoints: Endpoints,
    model: str,
    plan: RampPlan,
    breaks: Callable[[PerfResult], bool],
    *,
    settings: MeasureSettings = MeasureSettings(),
    **options: Unpack[EngineOptions],
) -> RampRun:
    """Drive ``model`` with ``plan``'s rate ramp (an open loop; ``options`` as for
    :func:`measure`, without a load level) and cut what it saw into buckets by scheduled
    time (``measure.ramp``). ``breaks(bucket)`` judges a bucket as it becomes due:
    ``plan.stop_after`` breaking buckets in a row stop the ramp. The hold at the start rate
    (``settings.warmup_s``) is the warm-up; ``settings`` bounds the drain too. Raises what
    :func:`measure` raises."""
    level = dict(options)
    for key in ("concurrency", "request_rate"):
        if level.pop(key, None) is not None:
            raise ArgumentError(f"measure_ramp: the ramp sets the load; remove {key}=")
    plan = plan.held(settings.warmup_s)
    level["request_rate"] = plan.ramp.start
    ready = prepare(endpoints, model, settings=settings, **cast(EngineOptions, level))
    ramped = dataclasses.replace(ready, load=dataclasses.replace(ready.load, ramp=plan.ramp))
    if ramped.shm is None:
        return run_coroutine(lambda: _ramp_async(ramped, plan, breaks))
    shm = ramped.shm[0]
    try:
        shm.open()
        return run_coroutine(lambda: _ramp_async(ramped, plan, breaks))
    finally:
        shm.close()


def _through_shared_memory(
    plan: Plan, shm: SharedMemory, expected: Sequence[Mapping[str, bytes]] | None
) -> PerfResult:
    """The measurement with its regions created and registered first, and unregistered and
    removed afterwards whatever happens (a failure, an interrupt)."""
    try:
        shm.open()
        result = run_coroutine(lambda: _measure_async([plan]))[0]
        return shared_memory_outcome(result, shm, expected)
    finally:
        shm.close()


async def _ramp_async(plan: Plan, ramp: RampPlan, breaks: Callable[[PerfResult], bool]) -> RampRun:
    """Start the ramp, judge its buckets as they fall due, stop and drain; the buckets cut
    again from every record once drained (the judged ones only)."""
    supervisor = Supervisor(lambda: in_thread(plan.endpoints.check_alive))
    watchdog = asyncio.create_task(supervisor.watch(ALIVE_INTERVAL_S))
    workers = 1 if plan.workers == "auto" else plan.workers
    driver: Driver | None = None
    try:
        driver = await open_driver(plan.load, workers, supervisor)
        t0 = time.perf_counter_ns()
        await driver.start(t0)
        judged, stopped = await _judge_ramp(driver, supervisor, plan, ramp, breaks, t0)
        _, records, stats = await driver.stop(plan.settings.drain_timeout_s)
        wall_s = (time.perf_counter_ns() - t0) / 1e9
        rise = t0 + int(ramp.ramp.hold_s * 1e9)
        buckets = tuple(_bucket(plan, ramp, records, rise, k, workers) for k in range(judged))
        end = rise + int(ramp.edges_s[judged] * 1e9)
        bound = generator_saturated(records.between(t0, end), stats)
        notes = (
            ("the load generator fell behind the ramp's schedule: its knee may be the "
             "client's limit, not the model's",)
            if bound else ()
        )  # fmt: skip
        return RampRun(ramp, buckets, stopped, wall_s, bound, notes)
    finally:
        watchdog.cancel()
        with contextlib.suppress(BaseException):
            await watchdog
        if driver is not None:
            await driver.close()
        supervisor.close()


async def _judge_ramp(
    driver: Driver,
    supervisor: Supervisor,
    plan: Plan,
    ramp: RampPlan,
    breaks: Callable[[PerfResult], bool],
    t0: int,
) -> tuple[int, bool]:
    """Judge each bucket ``grace_s`` after it ends, on the requests answered by then.
    Returns how many were judged, and whether breaking buckets stopped the ramp."""
    rise = t0 + int(ramp.ramp.hold_s * 1e9)
    edges = [rise + int(e * 1e9) for e in ramp.edges_s]
    grace = int(ramp.grace_s * 1e9)
    judged, breaking = 0, 0
    while judged < len(edges) - 1:
        await supervisor.sleep((edges[judged + 1] + grace - time.perf_counter_ns()) / 1e9)
        records = await driver.snapshot()
        now = time.perf_counter_ns()
        while judged < len(edges) - 1 and edges[judged + 1] + grace <= now:
            # Off the loop that keeps the schedule: a bucket's figures take milliseconds.
            judge = functools.partial(
                _breaks, breaks, plan, records, edges[judged], edges[judged + 1]
            )
            broke = await in_thread(judge)
            judged += 1
            breaking = breaking + 1 if broke else 0
            if breaking >= ramp.stop_after:
                return judged, True
    return judged, False


def _breaks(
    breaks: Callable[[PerfResult], bool], plan: Plan, records: Records, start: int, end: int
) -> bool:
    """Whether the requests scheduled in ``[start, end)`` and answered so far break a bound."""
    return breaks(summarise_started(plan, records, start, end))


def _bucket(
    plan: Plan, ramp: RampPlan, records: Records, rise: int, index: int, workers: int
) -> RampBucket:
    """Bucket ``index`` of a drained ramp whose rate started to rise at ``rise`` (ns)."""
    a, b = ramp.edges_s[index], ramp.edges_s[index + 1]
    start, end = rise + int(a * 1e9), rise + int(b * 1e9)
    rate = ramp.rate(index)
    ready = dataclasses.replace(
        plan, workload=dataclasses.replace(plan.workload, request_rate=rate)
    )
    answered = records.between(start, end)
    served = float(answered.ok.sum()) / (b - a)
    result = summarise_started(ready, records, start, end, workers=workers)
    # Its throughput, as a level's: what the server answered while it ran (the plateau
    # past the knee shows in it), its latencies those of the requests it offered.
    inferences = served * plan.workload.batch_size
    return RampBucket(a, b, rate, served, dataclasses.replace(result, throughput=inferences))


# --- the measurement ----------------------------------------------------------------------


async def _measure_async(plans: Sequence[Plan]) -> list[PerfResult]:
    """The sequence of the module docstring, in the running loop, for one model or for a
    group measured together (one driver each, every phase and window edge shared)."""
    endpoints, settings = plans[0].endpoints, plans[0].settings
    supervisor = Supervisor(lambda: in_thread(endpoints.check_alive))
    watchdog = asyncio.create_task(supervisor.watch(ALIVE_INTERVAL_S))
    drivers: list[Driver | None] = [None] * len(plans)
    sampler: MemorySampler | None = None
    meter: EnergyMeter | None = None
    try:
        workers = [1 if plan.workers == "auto" else plan.workers for plan in plans]
        for plan in plans:
            if plan.load.sequence is not None:
                await _probe_sequences(plan, supervisor)
        for i, plan in enumerate(plans):
            drivers[i] = await open_driver(plan.load, workers[i], supervisor)
        notes: list[list[str]] = [[] for _ in plans]
        # No warm-up, nothing to size the ramp from: the first window opens at the start.
        ramp = 0.0
        if settings.warmup_s > 0:
            stats, ramps = await _warm_up(_opened(drivers), supervisor, settings)
            cores = os.cpu_count() or 1
            saturated = False
            for i, plan in enumerate(plans):
                # Only a saturated event loop calls for more processes: late sends alone may
                # come from a machine the server keeps busy, where more processes would not
                # help.
                if plan.workers != "auto" or cores <= 1 or stats[i].loop_share < CLIENT_BOUND_CPU:
                    continue
                # One process could not keep up: share the load among several.
                saturated = True
                driver, drivers[i] = drivers[i], None
                if driver is not None:
                    await driver.close()
                workers[i] = min(cores, MAX_AUTO_WORKERS)
                load = plan.load
                if load.sequence is not None:  # the warm-up's sequence IDs are not reused
                    load = dataclasses.replace(load, sequence=load.sequence.renewed())
                drivers[i] = await open_driver(load, workers[i], supervisor)
                notes[i].append(
                    f"load generator saturated in warm-up: using {workers[i]} processes"
                )
            if saturated:
                stats, ramps = await _warm_up(_opened(drivers), supervisor, settings)
            ramp = max(ramps)

        readers = [
            StatsReader(
                endpoints.http_url,
                p.spec.name,
                p.workload.version,
                endpoints.check_alive,
                no_statistics=p.server.lacks(STATISTICS),
            )
            for p in plans
        ]
        s0 = [await r.quiet() for r in readers]
        all0 = await readers[0].all_models()
        # A container given some GPUs (--gpus) names them: NVML measures only those.
        sampler = MemorySampler(
            endpoints.metrics_url, gpu_devices=getattr(endpoints, "gpu_devices", None)
        )
        await in_thread(sampler.start)
        meter = meter_for(endpoints, len(plans))
        await in_thread(meter.open)

        batches = [p.workload.batch_size for p in plans]
        # The energy counter is read in the loop, next to the window edges (a fast call).
        t_load, boundaries = await _windows(
            _opened(drivers), supervisor, settings, batches, ramp, meter.start
        )
        meter.stop()
        peaks = asyncio.get_running_loop().run_in_executor(None, sampler.stop)
        stopped = await asyncio.gather(
            *(d.stop(settings.drain_timeout_s) for d in _opened(drivers))
        )
        memory = await peaks
        sampler = None

        ends = [
            await reader.settled(start, len(stop[1])) if start is not None else None
            for reader, start, stop in zip(readers, s0, stopped, strict=True)
        ]
        all1 = await readers[0].all_models()
        # The others of a group are measured with it, not someone else's traffic.
        group = {p.spec.name for p in plans}
        results = []
        for i, plan in enumerate(plans):
            cancelled, records, stats_i = stopped[i]
            start, s1 = s0[i], ends[i]
            # Every model's counters over the same span: the pipeline's steps, other traffic.
            seen = assess(plan.steps, plan.spec, all0, all1)
            observed = Observed(
                records=records,
                boundaries=boundaries,
                stats=stats_i,
                cancelled=cancelled,
                workers=workers[i],
                server=breakdown(start, s1) if start is not None and s1 is not None else None,
                memory=memory,
                unavailable={**readers[i].unavailable, **seen.unavailable},
                other_traffic=tuple((n, c) for n, c in seen.other_traffic if n not in group),
                notes=(*notes[i], *seen.notes),
                pipeline=seen.pipeline,
                energy=meter,
                load_start=t_load,
            )
            results.append(summarise(plan, observed))
        return results
    finally:
        if meter is not None:
            meter.close()
        if sampler is not None:
            with contextlib.suppress(Exception):
                await in_thread(sampler.stop)
        watchdog.cancel()
        with contextlib.suppress(BaseException):
            await watchdog
        for driver in drivers:
            if driver is not None:
                await driver.close()
        supervisor.close()


def _opened(drivers: Sequence[Driver | None]) -> list[Driver]:
    """The drivers of a run, every one open (a gap is a bug of the run's sequence)."""
    assert all(d is not None for d in drivers)
    return [d for d in drivers if d is not None]


async def _warm_up(
    drivers: Sequence[Driver], supervisor: Supervisor, settings: MeasureSettings
) -> tuple[list[PhaseStats], list[float]]:
    """Send for ``warmup_s`` (every driver from the same instant), then stop and drain:
    statistics snapshot S0 sees no request in progress. Returns each driver's costs and
    the ramp its latencies call for (:func:`~pytest_triton_perf.measure.windows.ramp_s`,
    from the requests completed in the second half of the warm-up and its drain)."""
    t0 = time.perf_counter_ns()
    for driver in drivers:
        await driver.start(t0)
    await supervisor.sleep(settings.warmup_s)
    stopped = await asyncio.gather(*(d.stop(settings.drain_timeout_s) for d in drivers))
    steady_from = t0 + int(settings.warmup_s * 1e9) // 2
    return (
        [stats for _, _, stats in stopped],
        [ramp_s(records, steady_from, settings.window_s) for _, records, _ in stopped],
    )


async def _windows(
    drivers: Sequence[Driver],
    supervisor: Supervisor,
    settings: MeasureSettings,
    batch_sizes: Sequence[int],
    ramp: float,
    opened: Callable[[], object],
) -> tuple[int, list[int]]:
    """Start the load at t_load, let it run ``ramp`` seconds, call ``opened`` as the first
    window opens (at t0), and cut windows until the stability rule holds for every driver
    (at least ``windows``, at most ``max_windows``). Returns t_load and the boundaries, t0
    first, shared by all the drivers. The load is still running."""
    t_load = time.perf_counter_ns()
    for driver in drivers:
        await driver.start(t_load)
    t0 = t_load
    if ramp > 0:
        await supervisor.sleep((t_load + int(ramp * 1e9) - time.perf_counter_ns()) / 1e9)
        t0 = time.perf_counter_ns()
    opened()
    boundaries = [t0]
    window_ns = int(settings.window_s * 1e9)
    while True:
        target = t0 + len(boundaries) * window_ns
        await supervisor.sleep((target - time.perf_counter_ns()) / 1e9)
        boundaries.append(time.perf_counter_ns())
        measured = len(boundaries) - 1
        if measured < settings.windows:
            continue
        if measured >= settings.max_windows:
            return t_load, boundaries
        stable = True
        for driver, batch in zip(drivers, batch_sizes, strict=True):
            wins = window_results(await driver.snapshot(), boundaries, batch)
            stable = stable and is_stable(wins, settings.stability_pct)
        if stable:
            return t_load, boundaries


async def _probe_sequences(plan: Plan, supervisor: Supervisor) -> None:
    """One sequence of one request before anything is measured: a model whose control
    inputs the server cannot fill fails here with one clear error, not one per request."""
    sequence = plan.load.sequence
    config = plan.spec.sequence
    assert sequence is not None and config is not None
    load = dataclasses.replace(
        plan.load, concurrency=1, workers=1, worker=0, sequence=sequence.for_probe()
    )
    driver = LocalDriver(load, supervisor)
    try:
        await driver.open()
        error = await driver.probe_sequence()
    finally:
        await driver.close()
    if error is None:
        return
    names = [c.name for c in config.controls]
    about_controls = any(f"'{n}'" in error for n in names) or any(
        w in error.lower() for w in ("correlation id", "sequence")
    )
    if about_controls:
        ids = "string" if sequence.string_ids else "integer"
        raise InputSpecError(
            f"model '{plan.spec.name}': the server cannot fill its sequence control inputs"
            f" {config.describe_controls()}: a sequence of one request ({ids} sequence_id,"
            f" sequence_start and sequence_end set) over {plan.load.protocol} failed with:"
            f" {error}"
        )


__all__ = ["Endpoints", "MeasureSettings", "measure", "measure_group", "measure_ramp", "prepare"]
