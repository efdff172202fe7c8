"""The measurement engine: one call drives load against a model and returns a PerfResult.

Sequence of one measurement::

    warm-up (warmup_s) -> drain -> statistics snapshot S0 -> memory sampler on
    -> windows (at least `windows`, extended up to `max_windows` until stable)
    -> stop sending, drain (requests completing now are not counted) -> snapshot S1

The load pauses between warm-up and the first window so that S0 sees no request in flight,
and S1 is taken once the drain has finished: the server's request count over S0..S1 then
equals the client's count over the same span exactly (``requests + drained``).

Closed loop (``concurrency``) or open loop (``request_rate``, constant or Poisson arrivals,
latency counted from the scheduled send time). The load runs in this process, or in several
worker processes when one cannot keep up (``workers``); either way windows are cut from the
raw records, so merged figures are exact.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import threading
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

import numpy as np

from pytest_triton_perf.errors import InputSpecError, MeasurementError
from pytest_triton_perf.load import grpc_client, http_client
from pytest_triton_perf.load.closed_loop import Supervisor
from pytest_triton_perf.load.driver import (
    GRPC_CLIENTS,
    Driver,
    LoadSpec,
    LocalDriver,
    PhaseStats,
)
from pytest_triton_perf.load.input_data import load_input_data
from pytest_triton_perf.load.inputs import InputTensor, ModelSpec, build_inputs
from pytest_triton_perf.load.model_info import (
    HttpStatusError,
    fetch_model_spec,
    fetch_stats,
    request_json,
    split_url,
)
from pytest_triton_perf.load.recorder import Records
from pytest_triton_perf.load.schedule import ARRIVALS
from pytest_triton_perf.load.workers import ProcessDriver, worker_loads
from pytest_triton_perf.measure.memory import MemorySampler
from pytest_triton_perf.measure.result import PerfResult, ServerBreakdown, Workload
from pytest_triton_perf.measure.server_stats import StatsSnapshot, breakdown
from pytest_triton_perf.measure.windows import is_stable, pool, window_results

T = TypeVar("T")

#: How often the server handle is asked whether the server is still alive.
ALIVE_INTERVAL_S = 0.5
#: Share of one core the event loop may use before the run is flagged client-bound.
CLIENT_BOUND_CPU = 0.9
#: A send later than this after its scheduled time is late (perf_analyzer's threshold).
LATE_NS = 1_000_000
#: Share of late sends above which an open loop is flagged (perf_analyzer warns at 1%).
LATE_SHARE_LIMIT = 0.01
#: Default bound on requests in flight in an open loop.
DEFAULT_MAX_IN_FLIGHT = 256
#: Most worker processes ``workers="auto"`` starts.
MAX_AUTO_WORKERS = 4


@dataclass(frozen=True)
class MeasureSettings:
    """How long and how carefully to measure one load level."""

    warmup_s: float = 2.0
    windows: int = 3  # windows measured at least
    window_s: float = 2.0
    max_windows: int = 10  # windows at most, while the stability rule is not met
    stability_pct: float = 10.0
    drain_timeout_s: float = 10.0  # bound on waiting for requests in flight at the end

    def __post_init__(self) -> None:
        problems = []
        if self.warmup_s < 0:
            problems.append(f"warmup_s must be >= 0, got {self.warmup_s!r}")
        if self.windows < 1:
            problems.append(f"windows must be >= 1, got {self.windows!r}")
        if self.window_s <= 0:
            problems.append(f"window_s must be > 0, got {self.window_s!r}")
        if self.max_windows < self.windows:
            problems.append(
                f"max_windows must be >= windows ({self.windows}), got {self.max_windows!r}"
            )
        if self.stability_pct <= 0:
            problems.append(f"stability_pct must be > 0, got {self.stability_pct!r}")
        if self.drain_timeout_s <= 0:
            problems.append(f"drain_timeout_s must be > 0, got {self.drain_timeout_s!r}")
        if problems:
            raise MeasurementError("invalid MeasureSettings: " + "; ".join(problems))


class Endpoints(Protocol):
    """What the engine needs of a server handle (local, container or remote)."""

    @property
    def http_url(self) -> str:
        """``host:port`` of the HTTP endpoint (a scheme is tolerated)."""
        ...

    @property
    def grpc_url(self) -> str:
        """``host:port`` of the gRPC endpoint."""
        ...

    @property
    def metrics_url(self) -> str | None:
        """Full URL of the Prometheus metrics, or None when metrics are off."""
        ...

    def check_alive(self) -> None:
        """Raise ServerDiedError if the server is gone."""
        ...


InputSet = str | Mapping[str, np.ndarray]
InputsArg = InputSet | Sequence[InputSet]


def measure(
    endpoints: Endpoints,
    model: str,
    *,
    version: str | None = None,
    concurrency: int = 1,
    batch_size: int = 1,
    protocol: str = "grpc",
    inputs: InputsArg = "random",
    shapes: Mapping[str, Sequence[int]] | None = None,
    settings: MeasureSettings = MeasureSettings(),
    seed: int = 0,
    request_rate: float | None = None,
    arrival: str = "constant",
    max_in_flight: int | None = None,
    workers: int | Literal["auto"] = "auto",
    grpc_client: str = "lean",
) -> PerfResult:
    """Measure ``model`` under a closed loop (``concurrency``) or open loop (``request_rate``).

    Inputs are built from the model's metadata and configuration: ``"random"`` (seeded by
    ``seed``), ``"zero"``, a dict of numpy arrays (one sample or a whole batch each), the path
    of a perf_analyzer JSON input-data file, or a list of such input sets sent in turn. They
    are encoded once and sent over ``protocol`` (``"grpc"`` or ``"http"``).

    Open loop: ``request_rate`` requests per second with ``arrival`` ``"constant"`` or
    ``"poisson"`` (seeded by ``seed``); latency counts from each request's scheduled send
    time; at most ``max_in_flight`` requests are outstanding (later sends wait, and count as
    late). ``workers``: load generator processes, or ``"auto"`` to add processes when one is
    saturated. ``grpc_client``: ``"lean"`` (HTTP/2 written directly, the default: far less
    client CPU per request) or ``"grpcio"`` (grpc.aio).

    Runs its own event loop, so it is called from synchronous code (or from any thread).
    Raises InputSpecError for arguments the model cannot take, ModelNotReadyError for a model
    that is not ready, ServerDiedError when the server goes away during the measurement.
    """
    _check_args(model, concurrency, protocol, request_rate, arrival, max_in_flight, workers)
    if grpc_client not in GRPC_CLIENTS:
        raise InputSpecError(
            f"model '{model}': grpc_client must be one of"
            f" {', '.join(map(repr, GRPC_CLIENTS))}, got {grpc_client!r}"
        )
    endpoints.check_alive()
    spec = _fetch_spec(endpoints, model, version)
    sets, label = _input_sets(spec, inputs, shapes)
    tensors = tuple(
        build_inputs(spec, s, batch_size=batch_size, shapes=shapes, seed=seed + k)
        for k, s in enumerate(sets)
    )
    open_loop = request_rate is not None
    workload = Workload(
        model=model,
        version=version,
        protocol="grpc" if protocol == "grpc" else "http",
        batch_size=batch_size,
        concurrency=None if open_loop else concurrency,
        request_rate=float(request_rate) if request_rate is not None else None,
        arrival="closed" if not open_loop else ("poisson" if arrival == "poisson" else "constant"),
        inputs=label,
        shapes=tuple(sorted((k, tuple(int(d) for d in v)) for k, v in (shapes or {}).items())),
    )
    uses_seed = "random" in label or (open_loop and arrival == "poisson")
    load = LoadSpec(
        protocol=workload.protocol,
        http_url=endpoints.http_url,
        grpc_url=endpoints.grpc_url,
        payloads=_encode(endpoints, spec, version, protocol, tensors),
        concurrency=None if open_loop else concurrency,
        request_rate=workload.request_rate,
        arrival=arrival,
        seed=seed,
        max_in_flight=max_in_flight or DEFAULT_MAX_IN_FLIGHT,
        grpc_client=grpc_client,
    )
    plan = _Plan(
        endpoints=endpoints,
        spec=spec,
        load=load,
        workload=workload,
        settings=settings,
        seed=seed if uses_seed else None,
        workers=workers,
    )
    return run_coroutine(lambda: _measure_async(plan))


def _check_args(
    model: str,
    concurrency: int,
    protocol: str,
    request_rate: float | None,
    arrival: str,
    max_in_flight: int | None,
    workers: int | str,
) -> None:
    def bad(what: str) -> InputSpecError:
        return InputSpecError(f"model '{model}': {what}")

    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
        raise bad(f"concurrency must be an integer >= 1, got {concurrency!r}")
    if protocol not in ("grpc", "http"):
        raise bad(f"protocol must be 'grpc' or 'http', got {protocol!r}")
    if request_rate is not None:
        if isinstance(request_rate, bool) or not isinstance(request_rate, int | float):
            raise bad(f"request_rate must be a number > 0 (requests/s), got {request_rate!r}")
        if not request_rate > 0:
            raise bad(f"request_rate must be a number > 0 (requests/s), got {request_rate!r}")
        if concurrency != 1:
            raise bad(
                f"concurrency={concurrency} applies to a closed loop; with request_rate use"
                " max_in_flight to bound requests in flight"
            )
    if arrival not in ARRIVALS:
        raise bad(f"arrival must be one of {', '.join(map(repr, ARRIVALS))}, got {arrival!r}")
    if max_in_flight is not None and (
        not isinstance(max_in_flight, int) or isinstance(max_in_flight, bool) or max_in_flight < 1
    ):
        raise bad(f"max_in_flight must be an integer >= 1, got {max_in_flight!r}")
    if workers != "auto" and (
        not isinstance(workers, int) or isinstance(workers, bool) or workers < 1
    ):
        raise bad(f"workers must be an integer >= 1 or 'auto', got {workers!r}")


def _fetch_spec(endpoints: Endpoints, model: str, version: str | None) -> ModelSpec:
    try:
        return fetch_model_spec(endpoints.http_url, model, version)
    except OSError as e:
        endpoints.check_alive()
        raise MeasurementError(
            f"cannot read model '{model}' metadata from {endpoints.http_url}: {e}"
        ) from e


def _input_sets(
    spec: ModelSpec, inputs: InputsArg, shapes: Mapping[str, Sequence[int]] | None
) -> tuple[list[str | Mapping[str, np.ndarray]], str]:
    """Input sets to rotate, and the label the workload records."""

    def one(item: Any) -> tuple[list[str | Mapping[str, np.ndarray]], str]:
        if isinstance(item, str) and item not in ("random", "zero"):
            if item.endswith(".json") or Path(item).is_file():
                return list(load_input_data(item, spec, shapes)), f"file:{Path(item).name}"
            raise InputSpecError(
                f"model '{spec.name}': inputs={item!r} is not accepted; use 'random', 'zero', a"
                " dict of numpy arrays, the path of a perf_analyzer JSON input-data file, or a"
                " list of these"
            )
        if isinstance(item, str):
            return [item], item
        if isinstance(item, Mapping):
            return [item], "user"
        raise InputSpecError(
            f"model '{spec.name}': an input set must be 'random', 'zero', a dict of numpy"
            f" arrays or a JSON file path, got {type(item).__name__}"
        )

    if isinstance(inputs, str | Mapping):
        return one(inputs)
    if isinstance(inputs, Sequence) and not isinstance(inputs, bytes | bytearray):
        if not inputs:
            raise InputSpecError(f"model '{spec.name}': inputs is an empty list")
        sets: list[str | Mapping[str, np.ndarray]] = []
        labels = []
        for item in inputs:
            s, label = one(item)
            sets += s
            labels.append(label)
        return sets, f"list[{len(sets)}]:" + ",".join(dict.fromkeys(labels))
    return one(inputs)


def _encode(
    endpoints: Endpoints,
    spec: ModelSpec,
    version: str | None,
    protocol: str,
    tensors: Sequence[tuple[InputTensor, ...]],
) -> tuple[bytes, ...]:
    outputs = [o.name for o in spec.outputs]
    if protocol == "http":
        host, port = split_url(endpoints.http_url)
        return tuple(
            http_client.encode_request(f"{host}:{port}", spec.name, version, t, outputs)
            for t in tensors
        )
    return tuple(grpc_client.encode_request(spec.name, version, t, outputs) for t in tensors)


@dataclass(frozen=True)
class _Plan:
    endpoints: Endpoints
    spec: ModelSpec
    load: LoadSpec
    workload: Workload
    settings: MeasureSettings
    seed: int | None
    workers: int | Literal["auto"]


# --- event loop -------------------------------------------------------------------------


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A fresh event loop: uvloop's when it is installed, asyncio's otherwise."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency where it exists
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run_coroutine(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion in a fresh event loop (uvloop when available).

    From a thread that already runs a loop (an async test), the work moves to a helper thread:
    nesting loops is not allowed.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _run_here(factory)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = _run_here(factory)
        except BaseException as e:
            box["error"] = e

    thread = threading.Thread(target=target, name="triton-perf-measure")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def _run_here(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    loop = new_event_loop()
    handled: list[tuple[int, Any]] = []
    received: list[int] = []
    try:
        asyncio.set_event_loop(loop)
        main = loop.create_task(factory())
        if threading.current_thread() is threading.main_thread():
            # An interrupt raised inside a transport callback would be swallowed by the loop
            # ("fatal error on transport"): route SIGINT, and SIGTERM when someone handles
            # it, through the loop instead, cancel cleanly, then hand the signal on.
            def on_signal(signum: int) -> None:
                received.append(signum)
                main.cancel()

            for sig in (signal.SIGINT, signal.SIGTERM):
                previous = signal.getsignal(sig)
                if not callable(previous):
                    continue
                with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
                    loop.add_signal_handler(sig, on_signal, sig)
                    handled.append((sig, previous))
        try:
            result = loop.run_until_complete(main)
            if not received:
                return result
            # A signal that came as the measurement ended is still delivered below.
        except BaseException:
            # Failure or interrupt: cancel what still runs so that connections and worker
            # processes are closed before the loop goes.
            main.cancel()
            with contextlib.suppress(BaseException):
                loop.run_until_complete(main)
            if not received:
                raise
    finally:
        try:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for t in pending:
                t.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            for signum, previous in handled:
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(signum)
                signal.signal(signum, previous)
            asyncio.set_event_loop(None)
            loop.close()
    # Interrupted, and everything is closed: deliver the signal as it would have been.
    first = received[0]
    dict(handled)[first](first, None)
    raise KeyboardInterrupt  # the handler returned: still, this measurement is over


# --- the measurement ----------------------------------------------------------------------


async def _in_thread(fn: Callable[[], T]) -> T:
    return await asyncio.get_running_loop().run_in_executor(None, fn)


async def _watchdog(supervisor: Supervisor) -> None:
    while True:
        await asyncio.sleep(ALIVE_INTERVAL_S)
        await supervisor.check_alive()


def _stats(plan: _Plan) -> StatsSnapshot:
    return StatsSnapshot.from_json(
        fetch_stats(plan.endpoints.http_url, plan.spec.name, plan.workload.version)
    )


async def _open_driver(plan: _Plan, workers: int, supervisor: Supervisor) -> Driver:
    driver: Driver
    if workers <= 1:
        driver = LocalDriver(plan.load, supervisor)
    else:
        driver = ProcessDriver(worker_loads(plan.load, workers))
    try:
        await driver.open()
    except BaseException:
        await driver.close()
        raise
    return driver


def _generator_saturated(records: Records, stats: PhaseStats) -> bool:
    """The load generator, not the server, limited this phase."""
    if stats.loop_share >= CLIENT_BOUND_CPU:
        return True
    late = records.late_share(LATE_NS)
    # Late sends while connections were free: the loop could not keep the schedule.
    return late is not None and late > LATE_SHARE_LIMIT and stats.pool_exhausted == 0


async def _phase(driver: Driver, supervisor: Supervisor, seconds: float, timeout: float) -> Any:
    await driver.start(time.perf_counter_ns())
    await supervisor.sleep(seconds)
    return await driver.stop(timeout)


async def _measure_async(plan: _Plan) -> PerfResult:
    endpoints = plan.endpoints
    settings = plan.settings
    loop = asyncio.get_running_loop()

    async def check() -> None:
        await loop.run_in_executor(None, endpoints.check_alive)

    supervisor = Supervisor(check)
    watchdog = asyncio.create_task(_watchdog(supervisor))
    driver: Driver | None = None
    sampler: MemorySampler | None = None
    try:
        n_workers = 1 if plan.workers == "auto" else plan.workers
        driver = await _open_driver(plan, n_workers, supervisor)
        notes: list[str] = []
        if settings.warmup_s > 0:
            _, _, stats = await _phase(
                driver, supervisor, settings.warmup_s, settings.drain_timeout_s
            )
            cores = os.cpu_count() or 1
            # Only a saturated event loop calls for more processes: late sends alone may come
            # from a machine the server keeps busy, where more processes would not help.
            if plan.workers == "auto" and cores > 1 and stats.loop_share >= CLIENT_BOUND_CPU:
                # One process could not keep up: share the load among several.
                await driver.close()
                n_workers = min(cores, MAX_AUTO_WORKERS)
                driver = None
                driver = await _open_driver(plan, n_workers, supervisor)
                notes.append(f"load generator saturated in warm-up: using {n_workers} processes")
                await _phase(driver, supervisor, settings.warmup_s, settings.drain_timeout_s)

        unavailable: dict[str, str] = {}
        s0 = await _try_stats(plan, unavailable)
        others0 = await _in_thread(lambda: _other_models_counts(plan))
        # A container given some GPUs (--gpus) names them: NVML measures only those.
        sampler = MemorySampler(
            endpoints.metrics_url, gpu_devices=getattr(endpoints, "gpu_devices", None)
        )
        await _in_thread(sampler.start)

        t0 = time.perf_counter_ns()
        boundaries = [t0]
        await driver.start(t0)
        window_ns = int(settings.window_s * 1e9)
        batch = plan.workload.batch_size
        while True:
            target = t0 + len(boundaries) * window_ns
            await supervisor.sleep((target - time.perf_counter_ns()) / 1e9)
            boundaries.append(time.perf_counter_ns())
            measured = len(boundaries) - 1
            if measured < settings.windows:
                continue
            if measured >= settings.max_windows:
                break
            wins = window_results(await driver.snapshot(), boundaries, batch)
            if is_stable(wins, settings.stability_pct):
                break
        t_end = boundaries[-1]
        peaks_future = loop.run_in_executor(None, sampler.stop)
        cancelled, records, stats = await driver.stop(settings.drain_timeout_s)
        peaks = await peaks_future
        sampler = None

        server: ServerBreakdown | None = None
        drained = len(records.between(t_end, np.iinfo(np.int64).max))
        if s0 is not None:
            s1 = await _settled_stats(plan, len(records), s0, unavailable)
            if s1 is not None:
                server = breakdown(s0, s1)
        others1 = await _in_thread(lambda: _other_models_counts(plan))
        other_traffic = tuple(
            (name, count - others0[name])
            for name, count in sorted(others1.items())
            if name in others0 and count > others0[name]
        )
        if other_traffic:
            notes.append(
                "the server was not idle: other models completed requests during the"
                " measurement ("
                + ", ".join(f"{name}: {n}" for name, n in other_traffic)
                + "); the figures include that load"
            )
        if cancelled:
            notes.append(
                f"{cancelled} request(s) still in flight {settings.drain_timeout_s:g}s after the"
                " last window were cancelled; server statistics may include them"
            )
        unavailable.update(peaks.unavailable)
        span = records.between(t0, t_end)
        late = span.late_share(LATE_NS)
        saturated = _generator_saturated(span, stats)
        if late is not None and late > LATE_SHARE_LIMIT:
            notes.append(
                f"{late:.1%} of requests were sent more than {LATE_NS / 1e6:g} ms after their"
                " scheduled time"
                + (
                    f" ({stats.pool_exhausted} waited for one of max_in_flight connections)"
                    if stats.pool_exhausted
                    else " (the load generator fell behind)"
                )
            )
        if saturated:
            notes.append(
                "client-bound: the load generator was saturated; figures show its limit, not"
                " the server's"
            )
        duration_s = (t_end - t0) / 1e9
        result = _result(
            plan,
            records,
            boundaries,
            server,
            unavailable,
            gpu_mb=peaks.gpu_mb,
            gpu_delta_mb=peaks.gpu_delta_mb,
            cpu_mb=peaks.cpu_mb,
            drained=drained,
            stats=stats,
            client_bound=saturated,
            late=late,
            rate=len(span) / duration_s if duration_s > 0 else 0.0,
            workers=n_workers,
            notes=notes,
        )
        return dataclasses.replace(result, other_traffic=other_traffic)
    finally:
        if sampler is not None:
            with contextlib.suppress(Exception):
                await _in_thread(sampler.stop)
        watchdog.cancel()
        with contextlib.suppress(BaseException):
            await watchdog
        if driver is not None:
            await driver.close()
        supervisor.close()


def _other_models_counts(plan: _Plan) -> dict[str, int]:
    """Completed requests (success + failure) of every OTHER model, from one statistics
    call; {} when the server does not answer it. A shared server (--triton-url) may serve
    other traffic while we measure: the deltas of these counts reveal it."""
    try:
        doc = request_json(plan.endpoints.http_url, "/v2/models/stats")
    except Exception:
        return {}
    counts: dict[str, int] = {}
    for entry in doc.get("model_stats", []) if isinstance(doc, dict) else []:
        name = str(entry.get("name", ""))
        if name == plan.spec.name:
            continue
        stats = entry.get("inference_stats", {})
        done = int(stats.get("success", {}).get("count", 0)) + int(
            stats.get("fail", {}).get("count", 0)
        )
        counts[name] = counts.get(name, 0) + done
    return counts


async def _try_stats(plan: _Plan, unavailable: dict[str, str]) -> StatsSnapshot | None:
    try:
        return await _in_thread(lambda: _stats(plan))
    except HttpStatusError as e:
        unavailable["server"] = f"Triton statistics: {e}"
    except OSError as e:
        await _in_thread(plan.endpoints.check_alive)
        unavailable["server"] = f"Triton statistics: {e}"
    except (ValueError, KeyError, TypeError) as e:
        unavailable["server"] = f"Triton statistics unreadable: {e}"
    return None


async def _settled_stats(
    plan: _Plan, expected: int, s0: StatsSnapshot, unavailable: dict[str, str]
) -> StatsSnapshot | None:
    """S1, re-read briefly when the server has not yet counted every answered request.

    Triton may publish a request's statistics a moment after its response left, so the
    last few drained requests can be missing from a snapshot taken at once.
    """
    deadline = time.monotonic() + 0.5
    while True:
        s1 = await _try_stats(plan, unavailable)
        if s1 is None:
            return None
        counted = (s1.success - s0.success) + (s1.fail - s0.fail)
        if counted >= expected or time.monotonic() >= deadline:
            return s1
        await asyncio.sleep(0.02)


def _result(
    plan: _Plan,
    records: Records,
    boundaries: list[int],
    server: ServerBreakdown | None,
    unavailable: dict[str, str],
    *,
    gpu_mb: float | None,
    gpu_delta_mb: float | None,
    cpu_mb: float | None,
    drained: int,
    stats: PhaseStats,
    client_bound: bool,
    late: float | None,
    rate: float,
    workers: int,
    notes: list[str],
) -> PerfResult:
    batch = plan.workload.batch_size
    wins = window_results(records, boundaries, batch)
    pooled = pool(records, boundaries, batch)
    return PerfResult(
        model=plan.spec.name,
        version=plan.workload.version,
        workload=plan.workload,
        throughput=pooled.throughput,
        latency_ms=pooled.latency_ms,
        requests=pooled.requests,
        errors=pooled.errors,
        windows=wins,
        duration_s=pooled.duration_s,
        stable=is_stable(wins, plan.settings.stability_pct),
        server=server,
        gpu_memory_mb=gpu_mb,
        cpu_memory_mb=cpu_mb,
        unavailable=tuple(sorted(unavailable.items())),
        first_error=pooled.first_error,
        client_bound=client_bound,
        seed=plan.seed,
        latencies_ms=pooled.latencies_ms,
        drained=drained,
        client_cpu=stats.loop_share,
        notes=tuple(notes),
        client_cpu_s=stats.process_cpu_s,
        late_share=late,
        request_rate_achieved=rate,
        workers=workers,
        gpu_memory_delta_mb=gpu_delta_mb,
    )


__all__ = ["Endpoints", "MeasureSettings", "measure", "new_event_loop", "run_coroutine"]
