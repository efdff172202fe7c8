"""Large tensors over the socket and through shared memory: our engine and perf_analyzer's
``--shared-memory=system``, same server, same model, same run.

Usage::

    python benchmarks/shared_memory_vs_perf_analyzer.py --perf-analyzer /path/to/perf_analyzer \
        [--cuda-lib DIR] [--repeats 2] [--window-s 2] [--concurrency 1] [--out results.json]

The embedded Triton serves ``large_io`` (benchmarks/models): 4 MiB in and 4 MiB out per
request, echoed by the Python backend. For each protocol (HTTP, gRPC) and each transport
(the socket, system shared memory), both tools run alternated (ours, perf_analyzer,
perf_analyzer, ours, ...) at ``--concurrency`` requests in flight, so that drift of the shared
machine hits both alike. perf_analyzer's shared memory is ``--shared-memory=system
--output-shared-memory-size=4194304``; ours is ``measure(shared_memory="system")``. Reported
per row (medians): throughput, p50 and p99 latency, and the generator's CPU seconds per
1,000 responses (ours: every thread over the windows, divided by the requests of the
windows; perf_analyzer: the whole process via wait4, divided by the requests the server
counted during its run).

perf_analyzer is found, set up and run by the harness the ``*_vs_perf_analyzer.py`` benchmarks
share (``harness.py``: a run that finds no stable point at 10% is repeated at 30%); here, one
that still finds none is repeated with windows twice as long.
"""

from __future__ import annotations

import dataclasses
import sys
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (
    BENCH_MODELS,
    FIGURE_COLUMNS,
    Figures,
    Harness,
    PerfAnalyzer,
    UnstableError,
    figure_cells,
    parser,
    print_row,
)

from pytest_triton_perf.server.base import TritonServer

MODEL = "large_io"
TENSOR_BYTES = 4 * 1024 * 1024
TRANSPORTS = ("socket", "system")


def perf_analyzer_run(
    pa: PerfAnalyzer, server: TritonServer, protocol: str, transport: str, *, concurrency: int
) -> Figures:
    """One perf_analyzer run on the large-tensor model, over the socket or through system
    shared memory (outputs of 4 MiB: its default of 100 KiB is too small)."""
    extra = (
        ("--shared-memory=system", f"--output-shared-memory-size={TENSOR_BYTES}")
        if transport == "system"
        else ()
    )
    try:
        return pa.figures(server, MODEL, protocol, concurrency=concurrency, extra=extra)
    except UnstableError:
        # Large requests are few per window: give perf_analyzer twice the window once more.
        longer = dataclasses.replace(pa, window_ms=2 * pa.window_ms)
        return longer.figures(server, MODEL, protocol, concurrency=concurrency, extra=extra)


def ours_run(
    h: Harness, server: TritonServer, protocol: str, transport: str, *, concurrency: int
) -> Figures:
    """One run of our engine, over the socket or through system shared memory."""
    r = h.ours(
        server,
        MODEL,
        protocol=protocol,
        concurrency=concurrency,
        shared_memory="none" if transport == "socket" else transport,
    )
    if transport != "socket" and r.outputs_verified is not True:
        raise RuntimeError(f"outputs read back from shared memory were not verified: {r.notes}")
    return Figures.of(r)


def main() -> None:
    """Run both tools over both protocols and both transports, and print the table."""
    ap = parser(__doc__, repeats=2, window_s=2.0, per="row")
    ap.add_argument("--concurrency", type=int, default=1, help="requests in flight (1)")
    args = ap.parse_args()
    h = Harness.start(args)
    print_row("protocol", "tensors", *FIGURE_COLUMNS)
    with h.serve(BENCH_MODELS, MODEL) as server:
        for protocol in ("http", "grpc"):
            for transport in TRANSPORTS:
                ours, pa = h.compare(
                    f"{protocol}/{transport}",
                    partial(
                        ours_run,
                        h,
                        server,
                        protocol,
                        transport,
                        concurrency=args.concurrency,
                    ),
                    partial(
                        perf_analyzer_run,
                        h.pa,
                        server,
                        protocol,
                        transport,
                        concurrency=args.concurrency,
                    ),
                )
                print_row(protocol, transport, *figure_cells(ours, pa, (1, 2, 2, 2)))
    h.finish(
        f"model {MODEL} ({TENSOR_BYTES >> 20} MiB in, {TENSOR_BYTES >> 20} MiB out)",
        f"concurrency {args.concurrency}",
    )


if __name__ == "__main__":
    main()
