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

perf_analyzer is found, set up and run as for ``engine_vs_perf_analyzer.py`` (the helpers
are shared with it: a run that finds no stable point at 10% is repeated at 30%; here, one
that still finds none is repeated with windows twice as long).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from functools import partial
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from engine_vs_perf_analyzer import (  # noqa: E402
    Figures,
    UnstableError,
    alternate,
    find_perf_analyzer,
    med,
    run_perf_analyzer,
)

from pytest_triton_perf.measure.engine import MeasureSettings, measure  # noqa: E402
from pytest_triton_perf.server.base import TritonServer  # noqa: E402
from pytest_triton_perf.server.local import LocalTritonServer  # noqa: E402

MODEL = "large_io"
TENSOR_BYTES = 4 * 1024 * 1024
TRANSPORTS = ("socket", "system")


def perf_analyzer_run(
    binary: str,
    server: TritonServer,
    protocol: str,
    transport: str,
    *,
    concurrency: int,
    window_ms: int,
    env: dict[str, str],
) -> Figures:
    """One perf_analyzer run on the large-tensor model, over the socket or through system
    shared memory (outputs of 4 MiB: its default of 100 KiB is too small)."""
    extra = (
        ("--shared-memory=system", f"--output-shared-memory-size={TENSOR_BYTES}")
        if transport == "system"
        else ()
    )
    run = partial(
        run_perf_analyzer,
        binary,
        server,
        protocol,
        concurrency=concurrency,
        env=env,
        model=MODEL,
        extra=extra,
    )
    try:
        return run(window_ms=window_ms)
    except UnstableError:
        # Large requests are few per window: give perf_analyzer twice the window once more.
        return run(window_ms=2 * window_ms)


def ours_run(
    server: TritonServer,
    protocol: str,
    transport: str,
    settings: MeasureSettings,
    *,
    concurrency: int,
) -> Figures:
    """One run of our engine (one process, as perf_analyzer's one)."""
    r = measure(
        server,
        MODEL,
        protocol=protocol,
        concurrency=concurrency,
        shared_memory="none" if transport == "socket" else transport,
        settings=settings,
        workers=1,
    )
    if r.errors or r.latency_ms is None:
        raise RuntimeError(f"our run had errors: {r.first_error}")
    if transport != "socket" and r.outputs_verified is not True:
        raise RuntimeError(f"outputs read back from shared memory were not verified: {r.notes}")
    return Figures(
        throughput=r.throughput,
        p50_ms=r.latency_ms.p50,
        p99_ms=r.latency_ms.p99,
        requests=r.requests,
        cpu_s=r.client_cpu_s or 0.0,
    )


def main() -> None:
    """Run both tools over both protocols and both transports, and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--perf-analyzer", help="path of perf_analyzer (else $PERF_ANALYZER, PATH)")
    ap.add_argument("--cuda-lib", help="directory holding libcudart.so.12, for perf_analyzer")
    ap.add_argument("--repeats", type=int, default=2, help="runs of each tool per row (2)")
    ap.add_argument("--window-s", type=float, default=2.0, help="measurement window (2.0 s)")
    ap.add_argument("--concurrency", type=int, default=1, help="requests in flight (1)")
    ap.add_argument("--out", type=Path, help="write every figure to this JSON file")
    args = ap.parse_args()

    binary = find_perf_analyzer(args.perf_analyzer)
    env = dict(os.environ)
    if args.cuda_lib:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (args.cuda_lib, env.get("LD_LIBRARY_PATH")) if p
        )
    settings = MeasureSettings(warmup_s=1.0, windows=3, window_s=args.window_s, max_windows=10)
    report: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "perf_analyzer": binary,
        "command": " ".join([sys.executable, *sys.argv]),
        "results": {},
    }
    header = (
        "protocol",
        "tensors",
        "infer/s ours | PA",
        "p50 ms ours | PA",
        "p99 ms ours | PA",
        "CPU s/1000 resp ours | PA",
    )
    print(" | ".join(header), flush=True)
    with LocalTritonServer([HERE / "models"], models=[MODEL]) as server:
        report["triton"] = server.version
        for protocol in ("http", "grpc"):
            for transport in TRANSPORTS:
                ours, theirs = alternate(
                    args.repeats,
                    partial(
                        ours_run,
                        server,
                        protocol,
                        transport,
                        settings,
                        concurrency=args.concurrency,
                    ),
                    partial(
                        perf_analyzer_run,
                        binary,
                        server,
                        protocol,
                        transport,
                        concurrency=args.concurrency,
                        window_ms=int(args.window_s * 1000),
                        env=env,
                    ),
                )
                report["results"][f"{protocol}/{transport}"] = {
                    "ours": [f.__dict__ for f in ours],
                    "perf_analyzer": [f.__dict__ for f in theirs],
                }

                def pair(
                    attr: str, digits: int, a: list[Figures] = ours, b: list[Figures] = theirs
                ) -> str:
                    x, y = med([getattr(f, attr) for f in a]), med([getattr(f, attr) for f in b])
                    return f"{x:.{digits}f} | {y:.{digits}f}"

                cells = (
                    protocol,
                    transport,
                    pair("throughput", 1),
                    pair("p50_ms", 2),
                    pair("p99_ms", 2),
                    pair("cpu_per_1000", 2),
                )
                print(" | ".join(cells), flush=True)
    print(
        f"\nmachine: {report['machine']}; Triton {report.get('triton')}; model {MODEL}"
        f" ({TENSOR_BYTES >> 20} MiB in, {TENSOR_BYTES >> 20} MiB out);"
        f" concurrency {args.concurrency}"
    )
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
