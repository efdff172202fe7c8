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

perf_analyzer is found, set up and run by the harness the ``*_vs_perf_analyzer.py`` benchmarks
share (``harness.py``).
"""

from __future__ import annotations

import statistics
import sys
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (
    EXAMPLE_MODELS,
    FIGURE_COLUMNS,
    Figures,
    Harness,
    figure_cells,
    parser,
    print_row,
)

from pytest_triton_perf.server.base import TritonServer

MODEL = "accumulator"
LENGTH = 20
VARIATION_PCT = 20


def ours_sequences(
    h: Harness,
    server: TritonServer,
    protocol: str,
    *,
    concurrency: int,
    sequence_ms: list[float],
) -> Figures:
    """One run of our engine on the sequence model."""
    r = h.ours(
        server,
        MODEL,
        "latency_ms",
        "sequence_latency_ms",
        protocol=protocol,
        concurrency=concurrency,
        sequence_length=LENGTH,
        sequence_length_variation=VARIATION_PCT / 100,
    )
    assert r.sequence_latency_ms is not None
    sequence_ms.append(r.sequence_latency_ms.p50)
    return Figures.of(r)


def main() -> None:
    """Run the comparison over HTTP and gRPC and print the table."""
    ap = parser(__doc__, repeats=2, window_s=1.0, per="protocol")
    ap.add_argument("--concurrency", type=int, default=4, help="sequences in flight (4)")
    args = ap.parse_args()
    h = Harness.start(args)
    print_row("protocol", *FIGURE_COLUMNS, "sequence p50 ms (ours)")
    with h.serve(EXAMPLE_MODELS, MODEL) as server:
        for protocol in ("http", "grpc"):
            sequence_ms: list[float] = []
            ours, pa = h.compare(
                protocol,
                partial(
                    ours_sequences,
                    h,
                    server,
                    protocol,
                    concurrency=args.concurrency,
                    sequence_ms=sequence_ms,
                ),
                partial(
                    h.pa.figures,
                    server,
                    MODEL,
                    protocol,
                    concurrency=args.concurrency,
                    extra=(
                        *("--sequence-length", str(LENGTH)),
                        *("--sequence-length-variation", str(VARIATION_PCT)),
                    ),
                ),
            )
            h.report["results"][protocol]["ours_sequence_p50_ms"] = sequence_ms
            print_row(
                protocol,
                *figure_cells(ours, pa, (0, 3, 3, 3)),
                f"{statistics.median(sequence_ms):.2f}",
            )
    h.finish(f"model {MODEL}", f"{args.concurrency} sequences of {LENGTH} +-{VARIATION_PCT}%")


if __name__ == "__main__":
    main()
