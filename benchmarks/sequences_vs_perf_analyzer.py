"""Sequences: our engine against perf_analyzer's ``--sequence-length``, same server, same
model, same load, one run.

Usage::

    python benchmarks/sequences_vs_perf_analyzer.py --perf-analyzer /path/to/perf_analyzer \
        [--cuda-lib DIR] [--repeats 2] [--window-s 1] [--concurrency 4] [--out results.json]

The embedded Triton serves the stateful example ``accumulator`` (Python backend, sequence
batcher, oldest strategy). Both tools keep ``--concurrency`` sequences in flight, each of 20
requests +-20% (perf_analyzer's ``--sequence-length 20 --sequence-length-variation 20``;
ours ``sequence_length=20, sequence_length_variation=0.2``), over HTTP and gRPC, alternated
(ours, perf_analyzer, perf_analyzer, ours, ...) so that drift of the shared machine hits both
alike. Reported per protocol (medians): throughput, p50 and p99 request latency, and the
generator's CPU seconds per 1,000 responses (ours: every thread over the windows, divided by
the requests of the windows; perf_analyzer: the whole process via wait4, divided by the
requests the server counted during its run). Ours also gives the latency of whole
sequences, which perf_analyzer does not report.

perf_analyzer is found and set up as for ``engine_vs_perf_analyzer.py`` (the helpers are
shared with it).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
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
)

from pytest_triton_perf.load.model_info import fetch_stats  # noqa: E402
from pytest_triton_perf.measure.engine import MeasureSettings, measure  # noqa: E402
from pytest_triton_perf.measure.server_stats import StatsSnapshot  # noqa: E402
from pytest_triton_perf.server.base import TritonServer  # noqa: E402
from pytest_triton_perf.server.local import LocalTritonServer  # noqa: E402

MODEL = "accumulator"
LENGTH = 20
VARIATION_PCT = 20


def _server_requests(server: TritonServer) -> int:
    s = StatsSnapshot.from_json(fetch_stats(server.http_url, MODEL))
    return s.success + s.fail


def perf_analyzer_sequences(
    binary: str,
    server: TritonServer,
    protocol: str,
    *,
    concurrency: int,
    window_ms: int,
    env: dict[str, str],
) -> Figures:
    """One perf_analyzer run on the sequence model; a looser stability band (30%) when it
    finds no stable measurement at 10% (exit 2), as the sibling benchmark does."""
    url = server.grpc_url if protocol == "grpc" else server.http_url
    for stability in (10, 30):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "pa.csv"
            cmd = [binary, "-m", MODEL, "-u", url, "-i", protocol, "-p", str(window_ms)]
            cmd += ["-f", str(out), "-s", str(stability), "-r", "10"]
            cmd += ["--concurrency-range", str(concurrency)]
            cmd += ["--sequence-length", str(LENGTH)]
            cmd += ["--sequence-length-variation", str(VARIATION_PCT)]
            before = _server_requests(server)
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
            assert proc.stdout is not None
            text = proc.stdout.read().decode(errors="replace")
            _, status, usage = os.wait4(proc.pid, 0)
            code = os.waitstatus_to_exitcode(status)
            requests = _server_requests(server) - before
            if code == 2 and stability == 10:
                continue
            if code == 2:
                raise UnstableError(text[-500:])
            if code != 0 or not out.exists():
                raise RuntimeError(f"perf_analyzer failed ({code}):\n{text[-2000:]}")
            with out.open() as f:
                row = next(csv.DictReader(f))
        return Figures(
            throughput=float(row["Inferences/Second"]),
            p50_ms=float(row["p50 latency"]) / 1000,
            p99_ms=float(row["p99 latency"]) / 1000,
            requests=requests,
            cpu_s=usage.ru_utime + usage.ru_stime,
        )
    raise AssertionError("unreachable")


def ours_sequences(
    server: TritonServer,
    protocol: str,
    settings: MeasureSettings,
    *,
    concurrency: int,
    sequence_ms: list[float],
) -> Figures:
    """One run of our engine on the sequence model (one process, as perf_analyzer's one)."""
    r = measure(
        server,
        MODEL,
        protocol=protocol,
        concurrency=concurrency,
        sequence_length=LENGTH,
        sequence_length_variation=VARIATION_PCT / 100,
        settings=settings,
        workers=1,
    )
    if r.errors or r.latency_ms is None or r.sequence_latency_ms is None:
        raise RuntimeError(f"our run had errors: {r.first_error}")
    sequence_ms.append(r.sequence_latency_ms.p50)
    return Figures(
        throughput=r.throughput,
        p50_ms=r.latency_ms.p50,
        p99_ms=r.latency_ms.p99,
        requests=r.requests,
        cpu_s=r.client_cpu_s or 0.0,
    )


def main() -> None:
    """Run the comparison over HTTP and gRPC and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--perf-analyzer", help="path of perf_analyzer (else $PERF_ANALYZER, PATH)")
    ap.add_argument("--cuda-lib", help="directory holding libcudart.so.12, for perf_analyzer")
    ap.add_argument("--repeats", type=int, default=2, help="runs of each tool per protocol (2)")
    ap.add_argument("--window-s", type=float, default=1.0, help="measurement window (1.0 s)")
    ap.add_argument("--concurrency", type=int, default=4, help="sequences in flight (4)")
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
        "infer/s ours | PA",
        "p50 ms ours | PA",
        "p99 ms ours | PA",
        "CPU s/1000 resp ours | PA",
        "sequence p50 ms (ours)",
    )
    print(" | ".join(header), flush=True)
    with LocalTritonServer([HERE.parent / "example_repo" / "models"], models=[MODEL]) as server:
        report["triton"] = server.version
        for protocol in ("http", "grpc"):
            sequence_ms: list[float] = []
            ours, theirs = alternate(
                args.repeats,
                partial(
                    ours_sequences,
                    server,
                    protocol,
                    settings,
                    concurrency=args.concurrency,
                    sequence_ms=sequence_ms,
                ),
                partial(
                    perf_analyzer_sequences,
                    binary,
                    server,
                    protocol,
                    concurrency=args.concurrency,
                    window_ms=int(args.window_s * 1000),
                    env=env,
                ),
            )
            report["results"][protocol] = {
                "ours": [f.__dict__ for f in ours],
                "perf_analyzer": [f.__dict__ for f in theirs],
                "ours_sequence_p50_ms": sequence_ms,
            }

            def pair(
                attr: str, digits: int, a: list[Figures] = ours, b: list[Figures] = theirs
            ) -> str:
                x, y = med([getattr(f, attr) for f in a]), med([getattr(f, attr) for f in b])
                return f"{x:.{digits}f} | {y:.{digits}f}"

            cells = (
                protocol,
                pair("throughput", 0),
                pair("p50_ms", 3),
                pair("p99_ms", 3),
                pair("cpu_per_1000", 3),
                f"{med(sequence_ms):.2f}",
            )
            print(" | ".join(cells), flush=True)
    print(
        f"\nmachine: {report['machine']}; Triton {report.get('triton')}; model {MODEL};"
        f" {args.concurrency} sequences of {LENGTH} +-{VARIATION_PCT}%"
    )
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
