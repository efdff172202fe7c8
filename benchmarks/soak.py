"""Soak: back-to-back gated measurements on the embedded server for a long time.

Usage::

    python benchmarks/soak.py [--minutes 30] [--window-s 0.5] [--json soak.json]
                              [--kill-server-at-s S]

The script starts the embedded Triton server (``LocalTritonServer`` over
``example_repo/models``) and measures, in a loop until the time is up, every combination of
model (simple, mlp, sleepy), protocol (gRPC, HTTP) and concurrency (1, 4). Each measurement
runs through the plugin's gate pipeline and is gated as a test's would be (a
``Measurement`` subject measured by ``GatePipeline.run``, its record judged by
``gate.evaluate_test`` with a generous SLA), so the whole path a CI run takes is exercised,
not just the load generator.

It reports requests measured, failed requests, measurements that raised, SLA verdicts, server
restarts, and the file descriptors, threads and resident memory of this (the plugin's)
process at start, after the warm-up, and at the end. Growth is judged from the warm-up
sample to the end, against these bounds:

- **fds: +10.** Between measurements every client connection is closed, so the count
  returns to the same value; a leak of one descriptor per measurement (a socket or a pipe
  left open) exceeds 10 within the first few minutes. The slack covers descriptors that
  libraries open lazily once (gRPC's epoll and wakeup fds, a resolver socket).
- **threads: +5.** Thread pools (gRPC, asyncio executors) are created once; a thread left
  per measurement exceeds this quickly.
- **RSS: +50 MB.** The first minute fills allocator arenas, gRPC's and numpy's caches and
  imports; after it the process should hold steady. A measurement keeps ~10^4 latencies
  (80 KB) plus its windows: holding on to every result would grow by 50 MB within a few
  hundred measurements, which a 10-minute soak runs.

``--kill-server-at-s`` SIGKILLs the server once at that time, to check that the soak (like
the plugin) notices the dead server, restarts it and counts the restart instead of crashing.
The exit status is 0 when every bound holds and every measurement that raised did so
because the server had died (and was restarted), else 1.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import json
import os
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pytest_triton_perf import sla  # noqa: E402
from pytest_triton_perf.errors import TritonPerfError  # noqa: E402
from pytest_triton_perf.gate import GateContext, GatePipeline, evaluate_test  # noqa: E402
from pytest_triton_perf.gate.subjects import Measurement  # noqa: E402
from pytest_triton_perf.measure.engine import MeasureSettings, measure  # noqa: E402
from pytest_triton_perf.server.local import LocalTritonServer  # noqa: E402

MODELS = ("simple", "mlp", "sleepy")
PROTOCOLS = ("grpc", "http")
CONCURRENCIES = (1, 4)
# Generous on purpose: the soak is about the plugin holding up, not about this machine's
# speed. sleepy sleeps 20 ms per execution; a shared 2-core box can stall for a second.
SLA = {"p99_ms": 2000.0, "min_throughput": 1.0, "max_error_rate": 0.0}
WARMUP_S = 60.0  # growth is judged from the first sample after this
BOUNDS = {"fds": 10, "threads": 5, "rss_mb": 50.0}
SAMPLE_EVERY_S = 10.0


@dataclass
class Sample:
    """Resources of this process at one moment."""

    t_s: float
    fds: int
    threads: int
    rss_mb: float


@dataclass
class Tally:
    """What the soak did."""

    measurements: int = 0
    requests: int = 0
    failed_requests: int = 0
    measurement_errors: int = 0
    sla_pass: int = 0
    sla_fail: int = 0
    server_restarts: int = 0
    first_problems: list[str] = field(default_factory=list)

    def problem(self, text: str) -> None:
        """Keep the first few problems verbatim for the report."""
        if len(self.first_problems) < 5:
            self.first_problems.append(text)


def sample(proc: psutil.Process, t0: float) -> Sample:
    """fds, threads and RSS of ``proc`` now."""
    with proc.oneshot():
        return Sample(
            t_s=round(time.monotonic() - t0, 1),
            fds=proc.num_fds(),
            threads=proc.num_threads(),
            rss_mb=round(proc.memory_info().rss / 1e6, 1),
        )


def start_server(log_dir: Path) -> LocalTritonServer:
    """The embedded server over the example models."""
    return LocalTritonServer([REPO / "example_repo" / "models"], log_dir=log_dir).start()


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The soak loop; returns everything the report prints."""
    settings = MeasureSettings(
        warmup_s=args.warmup_s,
        windows=args.windows,
        window_s=args.window_s,
        max_windows=args.windows + 2,
    )
    spec = sla.merge_markers("soak", [((), SLA)])
    ctx = GateContext(key={}, environment={}, store=None)
    pipeline = GatePipeline(ctx)  # no comparison: the SLA only
    workloads = itertools.cycle(itertools.product(MODELS, PROTOCOLS, CONCURRENCIES))
    tally = Tally()
    proc = psutil.Process()
    log_dir = Path(tempfile.mkdtemp(prefix="triton-perf-soak-"))
    t0 = time.monotonic()
    server = start_server(log_dir)
    start = sample(proc, t0)
    samples = [start]
    warm: Sample | None = None
    killed = False
    deadline = t0 + args.minutes * 60
    next_sample = time.monotonic() + SAMPLE_EVERY_S
    try:
        while time.monotonic() < deadline:
            now = time.monotonic() - t0
            if args.kill_server_at_s is not None and not killed and now >= args.kill_server_at_s:
                killed = True
                assert server.pid is not None
                os.killpg(server.pid, signal.SIGKILL)
                print(f"[{now:6.0f} s] injected: SIGKILL of the server (pid {server.pid})")
            model, protocol, concurrency = next(workloads)
            try:
                server.check_alive()
                run = functools.partial(measure, server, protocol=protocol, concurrency=concurrency)
                measured = pipeline.run(Measurement(model, run, settings))
            except TritonPerfError as e:
                tally.measurement_errors += 1
                tally.problem(f"{model} {protocol} conc={concurrency}: {str(e).splitlines()[0]}")
                try:
                    server.check_alive()
                except TritonPerfError:
                    # The server died: restart it, as a fresh session would, and count it.
                    server.stop()
                    server = start_server(log_dir)
                    tally.server_restarts += 1
                    print(f"[{time.monotonic() - t0:6.0f} s] server restarted")
                continue
            tally.measurements += 1
            result = measured[0].result
            tally.requests += result.requests + result.drained + result.ramp
            tally.failed_requests += result.errors
            verdict = evaluate_test("soak", spec, measured, ctx)
            if verdict.failure is None:
                tally.sla_pass += 1
            else:
                tally.sla_fail += 1
                tally.problem(verdict.failure.splitlines()[0])
            if time.monotonic() >= next_sample:
                next_sample += SAMPLE_EVERY_S
                s = sample(proc, t0)
                samples.append(s)
                if warm is None and s.t_s >= min(WARMUP_S, args.minutes * 60 / 2):
                    warm = s
                if args.verbose:
                    print(f"[{s.t_s:6.0f} s] {asdict(s)} measurements={tally.measurements}")
    finally:
        server.stop()
        with contextlib.suppress(OSError):
            for f in log_dir.iterdir():
                f.unlink()
            log_dir.rmdir()
    end = sample(proc, t0)
    samples.append(end)
    warm = warm or start
    growth = {
        "fds": end.fds - warm.fds,
        "threads": end.threads - warm.threads,
        "rss_mb": round(end.rss_mb - warm.rss_mb, 1),
    }
    verdicts = {k: growth[k] <= bound for k, bound in BOUNDS.items()}
    ok = all(verdicts.values()) and tally.measurement_errors == tally.server_restarts
    return {
        "minutes": args.minutes,
        "settings": asdict(settings),
        "tally": asdict(tally),
        "start": asdict(start),
        "warm": asdict(warm),
        "end": asdict(end),
        "growth": growth,
        "bounds": BOUNDS,
        "verdicts": verdicts,
        "passed": ok,
        "samples": [asdict(s) for s in samples],
    }


def report(out: dict[str, Any]) -> str:
    """The final table."""
    t = out["tally"]
    lines = [
        f"soak: {out['minutes']:g} min, {t['measurements']} gated measurements "
        f"({len(MODELS)} models x {len(PROTOCOLS)} protocols x {len(CONCURRENCIES)} "
        f"concurrencies, window {out['settings']['window_s']:g} s)",
        f"  requests measured   {t['requests']}",
        f"  failed requests     {t['failed_requests']}",
        f"  measurement errors  {t['measurement_errors']}",
        f"  SLA pass / fail     {t['sla_pass']} / {t['sla_fail']}",
        f"  server restarts     {t['server_restarts']}",
        "",
        f"  {'resource':<10} {'start':>9} {'warm':>9} {'end':>9} {'growth':>8} "
        f"{'bound':>7}  verdict",
    ]
    warm_t = out["warm"]["t_s"]
    for key in ("fds", "threads", "rss_mb"):
        lines.append(
            f"  {key:<10} {out['start'][key]:>9} {out['warm'][key]:>9} {out['end'][key]:>9} "
            f"{out['growth'][key]:>+8} {'+' + str(out['bounds'][key]):>7}  "
            f"{'PASS' if out['verdicts'][key] else 'FAIL'}"
        )
    lines.append(f"  (growth from the warm sample at {warm_t:g} s to the end)")
    for p in t["first_problems"]:
        lines.append(f"  problem: {p}")
    lines.append("PASS" if out["passed"] else "FAIL")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, soak, print the table (and write JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="length (default 30)")
    parser.add_argument("--window-s", type=float, default=0.5, help="window length (0.5)")
    parser.add_argument("--windows", type=int, default=2, help="windows per measurement (2)")
    parser.add_argument("--warmup-s", type=float, default=0.2, help="warm-up per measurement")
    parser.add_argument("--json", type=Path, help="write the figures and samples here")
    parser.add_argument("--kill-server-at-s", type=float, help="SIGKILL the server once then")
    parser.add_argument("--verbose", action="store_true", help="print every resource sample")
    args = parser.parse_args(argv)
    out = run(args)
    print(report(out))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0 if out["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
