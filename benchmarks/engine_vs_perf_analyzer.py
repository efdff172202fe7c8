"""Our measurement engine against perf_analyzer, same server, same workloads, same run.

Usage::

    python benchmarks/engine_vs_perf_analyzer.py --perf-analyzer /path/to/perf_analyzer \
        [--repeats 3] [--window-s 2] [--out results.json]

perf_analyzer is found, set up and run by the harness the ``*_vs_perf_analyzer.py`` benchmarks
share (``harness.py``: ``--perf-analyzer``, ``$PERF_ANALYZER`` or PATH; ``--cuda-lib``).

The script starts the embedded Triton server with the tiny Python-backend model ``simple`` and
alternates the two tools (ours, perf_analyzer, ours, ...) so that drift of this shared machine
hits both alike; it reports median ratios:

1. throughput at concurrency 16, ours / perf_analyzer (HTTP and gRPC);
2. p50 latency at concurrency 1, ours / perf_analyzer (HTTP and gRPC);
3. open loop at 50% and 90% of the measured capacity: achieved rate vs target, and p99 from the
   scheduled send time next to perf_analyzer's request-rate p99;
4. CPU seconds per 1,000 requests spent by each generator (ours: all threads over the windows;
   perf_analyzer: the whole process via wait4, divided by the requests the server counted
   during its run).
"""

from __future__ import annotations

import statistics
import sys
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (
    EXAMPLE_MODELS,
    Figures,
    Harness,
    median,
    parser,
    side_by_side,
)

from pytest_triton_perf.server.base import TritonServer

MODEL = "simple"


def ours_figures(
    h: Harness,
    server: TritonServer,
    protocol: str,
    *,
    concurrency: int = 1,
    rate: float | None = None,
) -> Figures:
    """One load level of our engine."""
    level: dict[str, Any] = {"request_rate": rate} if rate else {"concurrency": concurrency}
    r = h.ours(server, MODEL, protocol=protocol, **level)
    return Figures.of(r, achieved_rate=r.request_rate_achieved if rate else None)


def main() -> None:
    """Run every comparison and print the ratios."""
    args = parser(__doc__, repeats=3, window_s=2.0, per="workload").parse_args()
    h = Harness.start(args)

    def row(key: str, what: str, value: str) -> None:
        print(f"{key:<34}  {what:<34} {value}", flush=True)

    with h.serve(EXAMPLE_MODELS, MODEL) as server:
        capacity: dict[str, float] = {}
        for protocol in ("http", "grpc"):
            for conc in (16, 1):
                key = f"{protocol} conc={conc}"
                ours, pa = h.compare(
                    key,
                    partial(ours_figures, h, server, protocol, concurrency=conc),
                    partial(h.pa.figures, server, MODEL, protocol, concurrency=conc),
                )
                t_ours, t_pa = median(ours, "throughput"), median(pa, "throughput")
                p_ours, p_pa = median(ours, "p50_ms"), median(pa, "p50_ms")
                if conc == 16:
                    capacity[protocol] = max(t_ours, t_pa)
                    row(
                        key,
                        "throughput ours/PA",
                        f"{t_ours:.0f} / {t_pa:.0f} = {t_ours / t_pa:.2f}",
                    )
                else:
                    row(key, "p50 ms ours/PA", f"{p_ours:.3f} / {p_pa:.3f} = {p_ours / p_pa:.2f}")
                row(key, "CPU s per 1000 req ours | PA", side_by_side(ours, pa, "cpu_per_1000", 3))
        for protocol in ("http", "grpc"):
            for share in (0.5, 0.9):
                rate = round(capacity[protocol] * share)
                key = f"{protocol} rate={rate}/s ({share:.0%} of capacity)"
                ours, pa = h.compare(
                    key,
                    partial(ours_figures, h, server, protocol, rate=rate),
                    partial(h.pa.figures, server, MODEL, protocol, rate=rate),
                )
                achieved = statistics.median(f.achieved_rate or 0.0 for f in ours)
                row(
                    key,
                    "achieved rate ours (target)",
                    f"{achieved:.0f} ({achieved / rate - 1:+.1%})",
                )
                row(key, "p99 ms ours (from schedule) | PA", side_by_side(ours, pa, "p99_ms", 3))
    h.finish(f"model {MODEL}")


if __name__ == "__main__":
    main()
