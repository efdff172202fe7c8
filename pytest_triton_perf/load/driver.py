"""A load driver: the protocol clients plus a closed or open loop, in one event loop.

The engine talks to drivers only (start a phase, look at the records, stop and drain), so the
same measurement runs in this process (:class:`LocalDriver`) or spread over several worker
processes (:mod:`workers`), whose records are merged exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, get_args

from pytest_triton_perf.load import generate, grpc_client, h2_client, http_client, stream
from pytest_triton_perf.load.closed_loop import ClosedLoop, Supervisor, cancel_and_wait
from pytest_triton_perf.load.open_loop import OpenLoop
from pytest_triton_perf.load.recorder import Recorder, Records
from pytest_triton_perf.load.responses import ResponseRecorder
from pytest_triton_perf.load.schedule import RateRamp, offsets_ns, ramp_offsets_ns
from pytest_triton_perf.load.sequences import SequenceClient, SequencePlan, Sequencer
from pytest_triton_perf.load.transport import InferClient, TransportError
from pytest_triton_perf.urls import parse_url

#: gRPC channels (one TCP connection each) opened per process; clients share them.
MAX_GRPC_CHANNELS = 16
#: HTTP/2 connections of the lean gRPC client per process (streams are multiplexed).
MAX_H2_CONNECTIONS = 4
#: What ``grpc_client`` accepts: HTTP/2 written directly, or grpc.aio.
GrpcClient = Literal["lean", "grpcio"]
GRPC_CLIENTS: tuple[GrpcClient, ...] = get_args(GrpcClient)
#: Open loop: connections opened before the clock starts (more are opened on demand).
OPEN_LOOP_PRECONNECT = 8


@dataclass(frozen=True)
class LoadSpec:
    """Everything one process needs to generate its share of the load (picklable)."""

    protocol: str  # "grpc", "http" or "generate"
    http_url: str
    grpc_url: str
    payloads: tuple[bytes, ...]  # pre-encoded requests, rotated
    concurrency: int | None = 1  # closed loop: slots of this process
    request_rate: float | None = None  # open loop: total rate of all workers
    arrival: str = "constant"
    seed: int = 0
    max_in_flight: int = 1024  # open loop: bound of this process
    worker: int = 0
    workers: int = 1
    grpc_client: str = "lean"  # "lean" (h2_client) or "grpcio" (grpc.aio)
    sequence: SequencePlan | None = None  # a sequence model: how its sequences run
    stream: stream.StreamSpec | None = None  # a decoupled model: ModelStreamInfer, gRPC only
    ramp: RateRamp | None = None  # open loop: a rising rate instead of request_rate's

    @property
    def open_loop(self) -> bool:
        """True when requests follow a schedule rather than the answers."""
        return self.request_rate is not None


@dataclass
class PhaseStats:
    """What a driver knows about its own cost over one phase."""

    wall_s: float = 0.0
    loop_cpu_s: float = 0.0  # event loop thread only
    process_cpu_s: float = 0.0  # all threads (grpc's own threads included)
    pool_exhausted: int = 0  # open loop: sends that waited for a free connection
    per_worker_loop_share: list[float] = field(default_factory=list)

    @property
    def loop_share(self) -> float:
        """Highest share of one core used by any worker's event loop."""
        if self.per_worker_loop_share:
            return max(self.per_worker_loop_share)
        return self.loop_cpu_s / self.wall_s if self.wall_s > 0 else 0.0


class Driver(Protocol):
    """What the engine asks of a load driver."""

    async def open(self) -> None:
        """Create clients and connect, before any clock starts."""
        ...

    async def start(self, t0_ns: int) -> None:
        """Start a phase; open-loop schedules count from ``t0_ns``."""
        ...

    async def snapshot(self) -> Records:
        """Records of the current phase so far."""
        ...

    async def stop(self, timeout: float) -> tuple[int, Records, PhaseStats]:
        """Stop sending, drain (bounded), return cancelled count, records, and costs."""
        ...

    async def close(self) -> None:
        """Cancel whatever runs and release every connection."""
        ...


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


class LocalDriver:
    """Runs the load in the current event loop."""

    def __init__(self, load: LoadSpec, supervisor: Supervisor) -> None:
        self._load = load
        self._supervisor = supervisor
        self._channels: list[Any] = []
        self._clients: list[InferClient] = []
        self._recorder = Recorder()
        self._closed: ClosedLoop | None = None
        self._open: OpenLoop | None = None
        self._marks = (0.0, 0.0, 0.0)
        self._sequencer = (
            Sequencer(
                load.sequence,
                load.protocol,
                load.payloads,
                worker=load.worker,
                workers=load.workers,
            )
            if load.sequence is not None
            else None
        )

    def _new_client(self) -> InferClient:
        load = self._load
        client: (
            http_client.HttpInferClient | h2_client.H2GrpcInferClient | grpc_client.GrpcInferClient
        )
        if load.protocol == "generate":
            assert load.stream is not None
            host, port = parse_url(load.http_url, option="server address")
            return generate.GenerateClient(host, port, load.payloads, load.stream)
        if load.protocol == "http":
            host, port = parse_url(load.http_url, option="server address")
            client = http_client.HttpInferClient(host, port, load.payloads)
        else:
            channel = self._channels[len(self._clients) % len(self._channels)]
            if load.stream is not None and load.grpc_client == "lean":
                return stream.H2StreamInferClient(channel, load.payloads, load.stream)
            if load.stream is not None:
                return stream.GrpcStreamInferClient(channel, load.payloads, load.stream)
            if load.grpc_client == "lean":
                client = h2_client.H2GrpcInferClient(channel, load.payloads)
            else:
                client = grpc_client.GrpcInferClient(channel, load.payloads)
        if self._sequencer is not None:
            return SequenceClient(client, self._sequencer)
        return client

    def _tracked_client(self) -> InferClient:
        client = self._new_client()
        self._clients.append(client)
        return client

    async def open(self) -> None:
        """Create the clients; HTTP connections are opened now, not on the clock."""
        load = self._load
        n = load.concurrency or 1
        if load.open_loop:
            n = min(load.max_in_flight, OPEN_LOOP_PRECONNECT)
        if load.protocol == "grpc" and load.grpc_client == "lean":
            host, port = parse_url(load.grpc_url, option="server address")
            count = max(1, min(n if not load.open_loop else 4, MAX_H2_CONNECTIONS))
            self._channels = [h2_client.Http2Channel(host, port) for _ in range(count)]
        elif load.protocol == "grpc":
            url = load.grpc_url.split("://", 1)[-1]
            count = max(1, min(n if not load.open_loop else 4, MAX_GRPC_CHANNELS))
            self._channels = [grpc_client.open_channel(url) for _ in range(count)]
        for _ in range(n):
            self._tracked_client()
        try:
            await asyncio.gather(
                *(
                    c.connect()
                    for c in map(_unwrapped, self._clients)
                    if isinstance(
                        c,
                        http_client.HttpInferClient
                        | h2_client.H2GrpcInferClient
                        | stream.H2StreamInferClient
                        | generate.GenerateClient,
                    )
                )
            )
        except Exception:
            await self._supervisor.check_alive()
            raise

    async def start(self, t0_ns: int) -> None:
        """Start a phase with a fresh recorder."""
        load = self._load
        responses = None
        if load.stream is not None:
            keep = load.stream.text_output is not None
            responses = ResponseRecorder(texts=[] if keep else None)
        self._recorder = Recorder(responses=responses)
        if self._sequencer is not None:
            self._sequencer.recorder = self._recorder
        self._marks = (time.perf_counter(), time.thread_time(), _cpu())
        if load.open_loop:
            assert load.request_rate is not None
            rate, arrival, seed = load.request_rate, load.arrival, load.seed

            def schedule() -> Any:
                share = {"seed": seed, "worker": load.worker, "workers": load.workers}
                if load.ramp is not None:
                    return ramp_offsets_ns(load.ramp, arrival, **share)
                return offsets_ns(rate, arrival, **share)

            if self._open is None:
                self._open = OpenLoop(
                    self._tracked_client,
                    list(self._clients),
                    len(load.payloads),
                    self._recorder,
                    self._supervisor,
                    schedule,
                    load.max_in_flight,
                )
            self._open.reset(self._recorder)
            self._open.start(t0_ns)
        else:
            self._closed = ClosedLoop(
                self._clients, len(load.payloads), self._recorder, self._supervisor
            )
            self._closed.start()

    async def snapshot(self) -> Records:
        """Records of the current phase so far."""
        return self._recorder.snapshot()

    async def stop(self, timeout: float) -> tuple[int, Records, PhaseStats]:
        """Stop sending and drain; costs are measured up to the stop, not the drain."""
        wall0, loop0, cpu0 = self._marks
        stats = PhaseStats(
            wall_s=time.perf_counter() - wall0,
            loop_cpu_s=time.thread_time() - loop0,
            process_cpu_s=_cpu() - cpu0,
        )
        cancelled = 0
        if self._open is not None:
            cancelled = await self._open.stop(timeout)
            stats.pool_exhausted = self._open.pool_exhausted
        elif self._closed is not None:
            cancelled = await self._closed.stop(timeout)
            self._closed = None
        cancelled += await self._end_sequences(timeout)
        return cancelled, self._recorder.snapshot(), stats

    async def _end_sequences(self, timeout: float) -> int:
        """End every sequence still open (one request with ``sequence_end`` each), bounded
        by ``timeout``; returns how many of those requests had to be cancelled."""
        open_ = [c for c in self._clients if isinstance(c, SequenceClient) and c.in_sequence]
        if not open_:
            return 0
        tasks = [asyncio.create_task(c.finish()) for c in open_]
        pending = await self._supervisor.wait(tasks, timeout)
        await cancel_and_wait(list(pending))
        return len(pending)

    async def probe_sequence(self) -> str | None:
        """Send one whole sequence (one request, ``sequence_start`` and ``sequence_end``) on
        the first client, off the clock; the server's error, or None when it was answered.
        The IDs it uses are the sequencer's, so no later sequence reuses them."""
        if self._sequencer is None or not self._clients:
            return None
        client = _unwrapped(self._clients[0])
        sequencer = self._sequencer
        request = sequencer.encode(0, sequencer.next_id(), True, True)
        try:
            return await client.infer_raw(request)
        except TransportError as e:
            await self._supervisor.check_alive()
            return f"connection error: {e}"

    async def close(self) -> None:
        """Cancel and release everything."""
        if self._open is not None:
            await self._open.cancel()
        if self._closed is not None:
            await self._closed.cancel()
        for c in self._clients:
            with contextlib.suppress(Exception):
                await c.close()
        for ch in self._channels:
            with contextlib.suppress(Exception):
                if isinstance(ch, h2_client.Http2Channel):
                    ch.close()
                else:
                    await ch.close()


def _unwrapped(client: InferClient) -> Any:
    """The protocol client under a sequence slot's wrapper (or the client itself)."""
    return client.client if isinstance(client, SequenceClient) else client
