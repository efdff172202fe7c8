"""Our streaming measurement against perf_analyzer's ``--streaming``, same server, same model,
same load, one run.

Usage::

    python benchmarks/streaming_vs_perf_analyzer.py --perf-analyzer /path/to/perf_analyzer \
        [--cuda-lib DIR] [--repeats 2] [--window-s 2] [--concurrency 4,32] [--out results.json]

The embedded Triton server serves the example's decoupled model ``llm`` (first token after
40 ms, then one every 10 ms, 16 per request). At each concurrency the two tools alternate
(ours, perf_analyzer, perf_analyzer, ours, ...) and the script prints the medians:

1. TTFT p50 and p99, inter-response latency (ITL) p50 and p99 over the pooled gaps, and the
   per-request mean ITL (GenAI-Perf's definition), ours against perf_analyzer's. perf_analyzer
   prints none of these itself; GenAI-Perf computes them from its profile export, and so does
   this script (``--profile-export-file``: each request's send time and response times, the
   empty final-flag response dropped, as GenAI-Perf drops responses without content), over
   the requests of the windows perf_analyzer reports on;
2. generator CPU seconds per 1,000 responses: ours over the windows (all threads), perf_analyzer
   over its whole process (wait4), divided by the responses the server sent meanwhile (its
   request count times the model's 16).

The configured delays are the truth both tools should find: TTFT about 40 ms (plus the
client-server round trip), ITL 10 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine_vs_perf_analyzer import alternate, find_perf_analyzer  # noqa: E402

from pytest_triton_perf.load.model_info import fetch_stats  # noqa: E402
from pytest_triton_perf.measure.engine import MeasureSettings, measure  # noqa: E402
from pytest_triton_perf.measure.server_stats import StatsSnapshot  # noqa: E402
from pytest_triton_perf.measure.stats import nearest_rank  # noqa: E402
from pytest_triton_perf.server.base import TritonServer  # noqa: E402
from pytest_triton_perf.server.local import LocalTritonServer  # noqa: E402

MODEL = "llm"
TOKENS = 16  # responses per request of the example model


@dataclass
class StreamFigures:
    """One tool's figures for one run."""

    ttft_p50: float
    ttft_p99: float
    itl_p50: float
    itl_p99: float
    itl_request_avg: float
    requests: int
    responses: int  # sent by the server during the whole run (CPU is per run)
    cpu_s: float

    @property
    def cpu_per_1000(self) -> float:
        """CPU seconds per 1,000 responses."""
        return 1000 * self.cpu_s / self.responses if self.responses else float("nan")


def server_requests(server: TritonServer) -> int:
    """Requests the server has counted for MODEL so far."""
    s = StatsSnapshot.from_json(fetch_stats(server.http_url, MODEL))
    return s.success + s.fail


def summarize(
    ttft: list[float], gaps: list[float], per_request: list[float]
) -> tuple[float, float, float, float, float]:
    """TTFT p50/p99, pooled ITL p50/p99 (nearest rank), mean of the per-request ITL."""
    t, g = np.sort(ttft), np.sort(gaps)
    return (
        nearest_rank(t, 50),
        nearest_rank(t, 99),
        nearest_rank(g, 50),
        nearest_rank(g, 99),
        float(np.mean(per_request)),
    )


def from_profile(path: Path) -> tuple[list[float], list[float], list[float], int]:
    """TTFT, gaps and per-request mean gaps (ms) of the requests in perf_analyzer's profile
    export, as GenAI-Perf derives them: responses without content (the empty final one)
    are dropped."""
    doc = json.loads(path.read_text())
    ttft: list[float] = []
    gaps: list[float] = []
    per_request: list[float] = []
    requests = 0
    for experiment in doc["experiments"]:
        for r in experiment["requests"]:
            outputs = r.get("response_outputs") or []
            times = [
                t
                for t, out in zip(r["response_timestamps"], outputs, strict=False)
                if any(v not in ("", None) for v in (out or {}).values())
            ]
            if not times:
                continue
            requests += 1
            ttft.append((times[0] - r["timestamp"]) / 1e6)
            steps = np.diff(times) / 1e6
            gaps += steps.tolist()
            if len(times) > 1:
                per_request.append(float(steps.mean()))
    return ttft, gaps, per_request, requests


def run_perf_analyzer(
    binary: str, server: TritonServer, concurrency: int, window_ms: int, env: dict[str, str]
) -> StreamFigures:
    """One perf_analyzer run with ``--streaming`` (a looser stability band when it finds no
    stable point at 10%)."""
    for stability in (10, 30):
        with tempfile.TemporaryDirectory() as tmp:
            export = Path(tmp) / "profile.json"
            cmd = [binary, "-m", MODEL, "-u", server.grpc_url, "-i", "grpc", "--streaming"]
            cmd += ["--concurrency-range", str(concurrency), "-p", str(window_ms)]
            cmd += ["-s", str(stability), "-r", "10", "--profile-export-file", str(export)]
            before = server_requests(server)
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
            assert proc.stdout is not None
            text = proc.stdout.read().decode(errors="replace")
            _, status, usage = os.wait4(proc.pid, 0)
            code = os.waitstatus_to_exitcode(status)
            sent = server_requests(server) - before
            if code == 2 and stability == 10:
                continue  # unstable: once more with the looser band
            if code != 0 or not export.exists():
                raise RuntimeError(f"perf_analyzer failed ({code}):\n{text[-2000:]}")
            ttft, gaps, per_request, requests = from_profile(export)
        return StreamFigures(
            *summarize(ttft, gaps, per_request),
            requests=requests,
            responses=sent * TOKENS,
            cpu_s=usage.ru_utime + usage.ru_stime,
        )
    raise AssertionError("unreachable")


def run_ours(server: TritonServer, concurrency: int, settings: MeasureSettings) -> StreamFigures:
    """One run of our engine (lean gRPC client, one process)."""
    r = measure(server, MODEL, concurrency=concurrency, settings=settings, workers=1)
    if r.errors or r.stream is None:
        raise RuntimeError(f"our run had errors: {r.first_error}")
    s = r.stream
    return StreamFigures(
        *summarize(
            s.ttft_samples_ms.tolist(),
            s.itl_samples_ms.tolist(),
            s.itl_request_samples_ms.tolist(),
        ),
        requests=r.requests,
        responses=s.responses,
        cpu_s=r.client_cpu_s or 0.0,
    )


def main() -> None:
    """Run every concurrency and print the medians side by side."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--perf-analyzer", help="path of perf_analyzer (else $PERF_ANALYZER, PATH)")
    ap.add_argument("--cuda-lib", help="directory holding libcudart.so.12, for perf_analyzer")
    ap.add_argument("--repeats", type=int, default=2, help="runs of each tool per load (2)")
    ap.add_argument("--window-s", type=float, default=2.0, help="measurement window (2.0 s)")
    ap.add_argument("--concurrency", default="4,32", help="concurrency levels (4,32)")
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
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "load_1m": os.getloadavg()[0],
        },
        "command": " ".join([sys.executable, *sys.argv]),
        "results": {},
    }
    print(f"{'load':<8} {'figure':<32} {'ours':>10} {'perf_analyzer':>14}", flush=True)
    with LocalTritonServer([REPO / "example_repo" / "models"], models=[MODEL]) as server:
        report["triton"] = server.version
        for conc in (int(c) for c in args.concurrency.split(",")):
            ours, theirs = alternate(
                args.repeats,
                partial(run_ours, server, conc, settings),
                partial(run_perf_analyzer, binary, server, conc, int(args.window_s * 1000), env),
            )
            report["results"][f"conc={conc}"] = {
                "ours": [asdict(f) for f in ours],
                "perf_analyzer": [asdict(f) for f in theirs],
            }
            for name, unit, get in (
                ("TTFT p50", "ms", lambda f: f.ttft_p50),
                ("TTFT p99", "ms", lambda f: f.ttft_p99),
                ("ITL p50 (pooled gaps)", "ms", lambda f: f.itl_p50),
                ("ITL p99 (pooled gaps)", "ms", lambda f: f.itl_p99),
                ("ITL per-request mean", "ms", lambda f: f.itl_request_avg),
                ("CPU s per 1,000 responses", "s", lambda f: f.cpu_per_1000),
            ):
                a = statistics.median(get(f) for f in ours)
                b = statistics.median(get(f) for f in theirs)
                print(f"conc={conc:<3} {name + ' (' + unit + ')':<32} {a:>10.3f} {b:>14.3f}")
    load = os.getloadavg()[0]
    print(f"\nmachine: {report['machine']}; load at the end {load:.1f}; Triton {report['triton']}")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
