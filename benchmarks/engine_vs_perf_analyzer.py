"""Our measurement engine against perf_analyzer, same server, same workloads, same run.

Usage::

    python benchmarks/engine_vs_perf_analyzer.py --perf-analyzer /path/to/perf_analyzer \
        [--repeats 3] [--window-s 2] [--out results.json]

perf_analyzer is found through ``--perf-analyzer``, ``$PERF_ANALYZER`` or PATH. It ships in the
``tritonclient`` wheel (``bin/perf_analyzer``) and needs ``libb64`` and ``libcudart.so.12``
(``nvidia-cuda-runtime-cu12``; put its ``nvidia/cuda_runtime/lib`` on LD_LIBRARY_PATH, or pass
``--cuda-lib``). On a glibc older than 2.38, tritonclient 2.60's binary does not start; 2.49's
does.

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

import argparse
import csv
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pytest_triton_perf.load.model_info import fetch_stats  # noqa: E402
from pytest_triton_perf.measure.engine import MeasureSettings, measure  # noqa: E402
from pytest_triton_perf.measure.result import PerfResult  # noqa: E402
from pytest_triton_perf.measure.server_stats import StatsSnapshot  # noqa: E402
from pytest_triton_perf.server.base import TritonServer  # noqa: E402
from pytest_triton_perf.server.local import LocalTritonServer  # noqa: E402

MODEL = "simple"


@dataclass
class Figures:
    """One tool's figures for one workload run."""

    throughput: float
    p50_ms: float
    p99_ms: float
    requests: int
    cpu_s: float
    achieved_rate: float | None = None

    @property
    def cpu_per_1000(self) -> float:
        """CPU seconds per 1,000 requests."""
        return 1000 * self.cpu_s / self.requests if self.requests else float("nan")


def find_perf_analyzer(given: str | None) -> str:
    """Path of the perf_analyzer binary, or exit with what to do."""
    for candidate in (given, os.environ.get("PERF_ANALYZER"), shutil.which("perf_analyzer")):
        if candidate and Path(candidate).is_file():
            return candidate
    sys.exit(
        "perf_analyzer not found: pass --perf-analyzer PATH or set PERF_ANALYZER "
        "(pip install tritonclient==2.49.0 into a separate venv gives bin/perf_analyzer)"
    )


def server_requests(server: TritonServer, model: str = MODEL) -> int:
    """Requests (success + fail) the server has counted for ``model`` so far."""
    s = StatsSnapshot.from_json(fetch_stats(server.http_url, model))
    return s.success + s.fail


def run_perf_analyzer(
    binary: str,
    server: TritonServer,
    protocol: str,
    *,
    concurrency: int | None = None,
    rate: float | None = None,
    window_ms: int,
    env: dict[str, str],
    model: str = MODEL,
    extra: tuple[str, ...] = (),
) -> Figures:
    """One perf_analyzer load level on ``model`` (``extra``: more of its arguments); its CPU
    measured by wait4 over the whole process.

    perf_analyzer refuses to report an unstable point (exit 2); on a shared machine that is
    common, so it is then run once more with a looser stability band (30% instead of 10%).
    """
    once = partial(
        _perf_analyzer_once,
        binary,
        server,
        protocol,
        concurrency=concurrency,
        rate=rate,
        window_ms=window_ms,
        env=env,
        model=model,
        extra=extra,
    )
    try:
        return once(stability_pct=10)
    except UnstableError:
        return once(stability_pct=30)


class UnstableError(RuntimeError):
    """perf_analyzer found no stable measurement."""


def _perf_analyzer_once(
    binary: str,
    server: TritonServer,
    protocol: str,
    *,
    concurrency: int | None,
    rate: float | None,
    window_ms: int,
    env: dict[str, str],
    stability_pct: int,
    model: str = MODEL,
    extra: tuple[str, ...] = (),
) -> Figures:
    url = server.grpc_url if protocol == "grpc" else server.http_url
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "pa.csv"
        cmd = [binary, "-m", model, "-u", url, "-i", protocol, "-p", str(window_ms), *extra]
        cmd += ["-f", str(out), "-s", str(stability_pct), "-r", "10"]
        if rate is not None:
            cmd += ["--request-rate-range", f"{rate:g}", "--request-distribution", "constant"]
        else:
            cmd += ["--concurrency-range", str(concurrency)]
        before = server_requests(server, model)
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        assert proc.stdout is not None
        text = proc.stdout.read().decode(errors="replace")
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        requests = server_requests(server, model) - before
        if proc.returncode == 2:
            raise UnstableError(text[-500:])
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(f"perf_analyzer failed ({proc.returncode}):\n{text[-2000:]}")
        with out.open() as f:
            row = next(csv.DictReader(f))
    throughput = float(row["Inferences/Second"])
    return Figures(
        throughput=throughput,
        p50_ms=float(row["p50 latency"]) / 1000,
        p99_ms=float(row["p99 latency"]) / 1000,
        requests=requests,
        cpu_s=usage.ru_utime + usage.ru_stime,
        achieved_rate=throughput if rate is not None else None,
    )


def run_ours(
    server: TritonServer,
    protocol: str,
    settings: MeasureSettings,
    *,
    concurrency: int = 1,
    rate: float | None = None,
) -> tuple[Figures, PerfResult]:
    """One load level of our engine."""
    kwargs: dict[str, Any] = {"request_rate": rate} if rate else {"concurrency": concurrency}
    r = measure(server, MODEL, protocol=protocol, settings=settings, workers=1, **kwargs)
    if r.errors or r.latency_ms is None:
        raise RuntimeError(f"our run had errors: {r.first_error}")
    return (
        Figures(
            throughput=r.throughput,
            p50_ms=r.latency_ms.p50,
            p99_ms=r.latency_ms.p99,
            requests=r.requests,
            cpu_s=r.client_cpu_s or 0.0,
            achieved_rate=r.request_rate_achieved if rate else None,
        ),
        r,
    )


def ours_figures(
    server: TritonServer,
    protocol: str,
    settings: MeasureSettings,
    *,
    concurrency: int = 1,
    rate: float | None = None,
) -> Figures:
    """Our figures only."""
    return run_ours(server, protocol, settings, concurrency=concurrency, rate=rate)[0]


def alternate(
    repeats: int, ours: Callable[[], Figures], theirs: Callable[[], Figures]
) -> tuple[list[Figures], list[Figures]]:
    """Run A B B A A B ... so that a trend of the machine hits both tools alike."""
    a: list[Figures] = []
    b: list[Figures] = []
    for k in range(repeats):
        order = (ours, theirs) if k % 2 == 0 else (theirs, ours)
        for fn in order:
            (a if fn is ours else b).append(fn())
    return a, b


def med(values: list[float]) -> float:
    """Median."""
    return statistics.median(values)


def main() -> None:
    """Run every comparison and print the ratios."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--perf-analyzer", help="path of perf_analyzer (else $PERF_ANALYZER, PATH)")
    ap.add_argument("--cuda-lib", help="directory holding libcudart.so.12, for perf_analyzer")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each tool per workload (3)")
    ap.add_argument("--window-s", type=float, default=2.0, help="measurement window (2.0 s)")
    ap.add_argument("--out", type=Path, help="write every figure to this JSON file")
    args = ap.parse_args()

    binary = find_perf_analyzer(args.perf_analyzer)
    env = dict(os.environ)
    if args.cuda_lib:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (args.cuda_lib, env.get("LD_LIBRARY_PATH")) if p
        )
    settings = MeasureSettings(warmup_s=1.0, windows=3, window_s=args.window_s, max_windows=10)
    window_ms = int(args.window_s * 1000)
    report: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(),
        },
        "perf_analyzer": binary,
        "command": " ".join([sys.executable, *sys.argv]),
        "results": {},
    }
    rows: list[tuple[str, str, str]] = []

    def row(entry: tuple[str, str, str]) -> None:
        key, what, value = entry
        rows.append(entry)
        print(f"{key:<34}  {what:<34} {value}", flush=True)

    with LocalTritonServer([REPO / "example_repo" / "models"], models=[MODEL]) as server:
        report["triton"] = server.version
        capacity: dict[str, float] = {}
        for protocol in ("http", "grpc"):
            for conc in (16, 1):
                ours, theirs = alternate(
                    args.repeats,
                    partial(ours_figures, server, protocol, settings, concurrency=conc),
                    partial(
                        run_perf_analyzer,
                        binary,
                        server,
                        protocol,
                        concurrency=conc,
                        window_ms=window_ms,
                        env=env,
                    ),
                )
                key = f"{protocol} conc={conc}"
                report["results"][key] = {
                    "ours": [f.__dict__ for f in ours],
                    "perf_analyzer": [f.__dict__ for f in theirs],
                }
                t_ours, t_pa = (
                    med([f.throughput for f in ours]),
                    med([f.throughput for f in theirs]),
                )
                p_ours, p_pa = med([f.p50_ms for f in ours]), med([f.p50_ms for f in theirs])
                c_ours = med([f.cpu_per_1000 for f in ours])
                c_pa = med([f.cpu_per_1000 for f in theirs])
                if conc == 16:
                    capacity[protocol] = max(t_ours, t_pa)
                    row(
                        (
                            key,
                            "throughput ours/PA",
                            f"{t_ours:.0f} / {t_pa:.0f} = {t_ours / t_pa:.2f}",
                        )
                    )
                else:
                    row((key, "p50 ms ours/PA", f"{p_ours:.3f} / {p_pa:.3f} = {p_ours / p_pa:.2f}"))
                row((key, "CPU s per 1000 req ours | PA", f"{c_ours:.3f} | {c_pa:.3f}"))
        for protocol in ("http", "grpc"):
            for share in (0.5, 0.9):
                rate = round(capacity[protocol] * share)
                ours, theirs = alternate(
                    args.repeats,
                    partial(ours_figures, server, protocol, settings, rate=rate),
                    partial(
                        run_perf_analyzer,
                        binary,
                        server,
                        protocol,
                        rate=rate,
                        window_ms=window_ms,
                        env=env,
                    ),
                )
                key = f"{protocol} rate={rate}/s ({share:.0%} of capacity)"
                report["results"][key] = {
                    "ours": [f.__dict__ for f in ours],
                    "perf_analyzer": [f.__dict__ for f in theirs],
                }
                achieved = med([f.achieved_rate or 0.0 for f in ours])
                row(
                    (
                        key,
                        "achieved rate ours (target)",
                        f"{achieved:.0f} ({achieved / rate - 1:+.1%})",
                    )
                )
                row(
                    (
                        key,
                        "p99 ms ours (from schedule) | PA",
                        f"{med([f.p99_ms for f in ours]):.3f}"
                        f" | {med([f.p99_ms for f in theirs]):.3f}",
                    )
                )
    print(f"\nmachine: {report['machine']}; Triton {report.get('triton')}; model {MODEL}")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
