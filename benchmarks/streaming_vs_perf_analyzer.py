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

perf_analyzer is found, set up and run by the harness the ``*_vs_perf_analyzer.py`` benchmarks
share (``harness.py``).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import EXAMPLE_MODELS, Harness, PerfAnalyzer, median, parser

from pytest_triton_perf.measure.stats import nearest_rank
from pytest_triton_perf.server.base import TritonServer

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


def perf_analyzer_streaming(
    pa: PerfAnalyzer, server: TritonServer, concurrency: int
) -> StreamFigures:
    """One perf_analyzer run with ``--streaming`` over gRPC, its figures from its profile
    export (:func:`from_profile`)."""
    run = pa.run(
        server,
        MODEL,
        "grpc",
        load=["--streaming", "--concurrency-range", str(concurrency)],
        output=("--profile-export-file", "profile.json"),
        read=from_profile,
    )
    ttft, gaps, per_request, requests = run.value
    return StreamFigures(
        *summarize(ttft, gaps, per_request),
        requests=requests,
        responses=run.requests * TOKENS,
        cpu_s=run.cpu_s,
    )


def run_ours(h: Harness, server: TritonServer, concurrency: int) -> StreamFigures:
    """One run of our engine (lean gRPC client)."""
    r = h.ours(server, MODEL, "stream", concurrency=concurrency)
    s = r.stream
    assert s is not None
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
    ap = parser(__doc__, repeats=2, window_s=2.0, per="load")
    ap.add_argument("--concurrency", default="4,32", help="concurrency levels (4,32)")
    args = ap.parse_args()
    h = Harness.start(args)
    print(f"{'load':<8} {'figure':<32} {'ours':>10} {'perf_analyzer':>14}", flush=True)
    with h.serve(EXAMPLE_MODELS, MODEL) as server:
        for conc in (int(c) for c in args.concurrency.split(",")):
            ours, pa = h.compare(
                f"conc={conc}",
                partial(run_ours, h, server, conc),
                partial(perf_analyzer_streaming, h.pa, server, conc),
            )
            for name, unit, attr in (
                ("TTFT p50", "ms", "ttft_p50"),
                ("TTFT p99", "ms", "ttft_p99"),
                ("ITL p50 (pooled gaps)", "ms", "itl_p50"),
                ("ITL p99 (pooled gaps)", "ms", "itl_p99"),
                ("ITL per-request mean", "ms", "itl_request_avg"),
                ("CPU s per 1,000 responses", "s", "cpu_per_1000"),
            ):
                a, b = median(ours, attr), median(pa, attr)
                print(f"conc={conc:<3} {name + ' (' + unit + ')':<32} {a:>10.3f} {b:>14.3f}")
    h.finish(f"model {MODEL}", f"load at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
