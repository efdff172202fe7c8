"""The offset between two identical arms, per load, and the noise of a pair of blocks:
alternating blocks (of several lengths) against duet runs.

Usage::

    python benchmarks/arm_offset.py --epochs 10            # both designs, about 4 minutes
    python benchmarks/arm_offset.py --epochs 8 --designs alt,alt25,alt1   # block lengths

One embedded server serves two copies of the CPU-bound ``busy`` model (``tests/models/busy``,
one instance, concurrency 2) loaded as A/B mode loads them (``ReferenceModels``: ``__ref``
and ``__cand``). ``--epochs`` load epochs (both copies unloaded and loaded again, in a
random order), a noisy neighbour (one core burned) in every other epoch; in each epoch every
design in a random order (the machine's noise changes between runs more than between
designs, so designs are compared inside the same minutes), each with the same time of
blocks (``--pairs`` pairs of 0.5 s blocks, or as many seconds of shorter or longer ones):

- ``alt``: A/B mode's design, blocks of 0.5 s alternating A B B A with a random first arm;
  ``alt25``, ``alt1``, ``alt2``: the same with blocks of 0.25, 1 and 2 s;
- ``duet``: both copies measured at the same time, each at its own load, in the same windows
  (Bulej et al., "Duet benchmarking", ICPE 2020).

Per epoch it prints the mean log-ratio (candidate / reference) of p50, p95 and throughput and
its within-epoch spread; at the end, per design and metric, the spread of the epoch means,
the pooled within-epoch spread, tau, the offset's own sd (DerSimonian-Laird: what
``triton-perf calibrate`` stores), and the standard error of an epoch mean per minute of
blocks.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import gate_quality as gq  # noqa: E402

from pytest_triton_perf.baseline.epochs import (  # noqa: E402
    EpochEstimate,
    offset_variance,
)
from pytest_triton_perf.baseline.reference import (  # noqa: E402
    ReferenceModels,
    backend_processes,
)
from pytest_triton_perf.measure.engine import MeasureSettings, measure, measure_group  # noqa: E402
from pytest_triton_perf.server.local import LocalTritonServer  # noqa: E402

BLOCK = MeasureSettings(warmup_s=0.1, windows=1, window_s=0.5, max_windows=1)
#: Alternating designs with other block lengths (``alt`` and ``duet`` use BLOCK).
BLOCKS = {
    "alt25": MeasureSettings(warmup_s=0.1, windows=1, window_s=0.25, max_windows=1),
    "alt1": MeasureSettings(warmup_s=0.1, windows=1, window_s=1.0, max_windows=1),
    "alt2": MeasureSettings(warmup_s=0.1, windows=1, window_s=2.0, max_windows=1),
}
WARM = MeasureSettings(warmup_s=0.5, windows=1, window_s=0.5, max_windows=1)
METRICS = ("p50", "p95", "tp")
#: The CPUs this process may use at its start (``isolate`` narrows its own set later).
CPUS = frozenset(os.sched_getaffinity(0))


def ratios(a: object, b: object) -> dict[str, float]:
    la, lb = a.latency_ms, b.latency_ms  # type: ignore[attr-defined]
    return {
        "p50": math.log(lb.p50 / la.p50),
        "p95": math.log(lb.p95 / la.p95),
        "tp": math.log(b.throughput / a.throughput),  # type: ignore[attr-defined]
    }


def pin_threads(pid: int, cpus: set[int]) -> None:
    """Every thread of process ``pid`` on ``cpus`` (``sched_setaffinity`` moves one thread;
    threads started later inherit their creator's set)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError, FileNotFoundError):  # a thread ended
            os.sched_setaffinity(int(tid), cpus)


def pin(server: LocalTritonServer, names: tuple[str, str], how: str) -> None:
    """Both arms' stubs on the last CPU (``same``), the reference's on the first and the
    candidate's on the last (``apart``), or both on the last with the server and this
    process (the load generator) on the others (``isolate``)."""
    everything = set(CPUS)
    last = max(everything)
    if how == "isolate" and len(everything) > 1:
        assert server.pid is not None
        pin_threads(server.pid, everything - {last})
        pin_threads(os.getpid(), everything - {last})
    for i, name in enumerate(names):
        cpus = {last} if how in ("same", "isolate") else {min(everything) if i == 0 else last}
        assert server.pid is not None
        found = backend_processes(server.pid, [name])
        if not found:
            raise RuntimeError(f"no backend process of '{name}' found to pin")
        for p in found:
            p.cpu_affinity(sorted(cpus))


def epoch(
    server: LocalTritonServer,
    refs: ReferenceModels,
    name: str,
    design: str,
    args: argparse.Namespace,
    rng: random.Random,
    neighbour: gq.Neighbour,
    noisy: bool,
) -> tuple[dict[str, list[float]], float]:
    """One load epoch of ``design``: both copies loaded anew, then its pairs; the per-pair
    log-ratios, and the seconds its blocks took."""
    refs.reload(name, candidate_first=rng.random() < 0.5)
    arms = refs.arms(name)
    assert arms is not None
    ref, cand, _ = arms
    if args.pin != "off":
        pin(server, (ref, cand), args.pin)
    block = BLOCKS.get(design, BLOCK)
    # The same time of blocks for every design: shorter blocks, more pairs.
    pairs = round(args.pairs * BLOCK.window_s / block.window_s)
    if noisy:
        neighbour.start()
    try:
        run = functools.partial(measure, server, concurrency=2)
        run(ref, settings=WARM)
        run(cand, settings=WARM)
        got: dict[str, list[float]] = {m: [] for m in METRICS}
        first = rng.randrange(2)
        t0 = time.perf_counter()
        for i in range(pairs):
            if design == "duet":
                both = measure_group(
                    server,
                    {ref: {"concurrency": 2}, cand: {"concurrency": 2}},
                    settings=block,
                )
                a, b = both[ref], both[cand]
            else:
                order = (first, 1 - first) if i % 2 == 0 else (1 - first, first)
                res = {arm: run((ref, cand)[arm], settings=block) for arm in order}
                a, b = res[0], res[1]
            for m, v in ratios(a, b).items():
                got[m].append(v)
        return got, time.perf_counter() - t0
    finally:
        neighbour.stop()


def summarise(design: str, rows: list[dict[str, list[float]]], seconds: float) -> None:
    """Per metric: the spread of the epoch means, the pooled within-epoch spread of one
    pair, tau, and the standard error of an epoch's mean per minute of blocks (what a
    verdict's time depends on: the smaller, the sooner)."""
    for m in METRICS:
        est = [
            EpochEstimate(float(np.mean(r[m])), float(np.var(r[m], ddof=1)) / len(r[m]), len(r[m]))
            for r in rows
        ]
        means = np.array([x.mean for x in est])
        within = math.sqrt(np.mean([x.var * x.units for x in est]))
        tau = math.sqrt(offset_variance(est))
        pairs = sum(x.units for x in est)
        per_minute = within * math.sqrt(seconds / 60 / pairs)
        print(
            f"SUMMARY {design} {m}: epoch means sd {100 * means.std(ddof=1):.2f}%, "
            f"within-epoch sd {100 * within:.2f}%, offset tau {100 * tau:.2f}%, "
            f"mean {100 * means.mean():+.2f}%, se of a minute of pairs "
            f"{100 * per_minute:.2f}% ({pairs} pairs in {seconds:.0f} s)"
        )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--pairs", type=int, default=8)
    p.add_argument("--designs", default="alt,duet")
    p.add_argument(
        "--pin",
        default="off",
        choices=("off", "same", "apart", "isolate"),
        help="pin both arms' backend processes to the last CPU (same), each to a CPU of "
        "its own (apart), or to the last CPU with the server and the load generator on the "
        "others (isolate), after every load",
    )
    p.add_argument("--noisy", default="half", choices=("half", "always", "off"))
    args = p.parse_args()
    rng = random.Random(1)
    root = Path(tempfile.mkdtemp(prefix="arm-offset-"))
    spec = gq.MODELS["busy"]
    server_repo, ref_repo = gq.build_repositories(root, [spec], [0])
    name = gq.arm_name("busy", 0)
    neighbour = gq.Neighbour()
    with LocalTritonServer([server_repo], models=[name], startup_timeout_s=300) as server:
        refs = ReferenceModels(server, ref_repo, origin="benchmark", candidates=[server_repo])
        refs.arms(name)
        try:
            designs = args.designs.split(",")
            rows: dict[str, list[dict[str, list[float]]]] = {d: [] for d in designs}
            seconds: dict[str, float] = dict.fromkeys(designs, 0.0)
            # Epoch by epoch, every design in a random order: the machine's noise changes
            # from one run to the next (the same command read a pooled p50 spread of 3.7%,
            # 7.9% and 23% in three runs of one afternoon), so designs are compared inside
            # the same minutes, not run after run.
            for e in range(args.epochs):
                noisy = args.noisy == "always" or (args.noisy == "half" and e % 2 == 1)
                for design in rng.sample(designs, len(designs)):
                    got, took = epoch(server, refs, name, design, args, rng, neighbour, noisy)
                    rows[design].append(got)
                    seconds[design] += took
                    shown = ", ".join(
                        f"{m} {100 * np.mean(x):+.1f}% (sd {100 * np.std(x, ddof=1):.1f}%)"
                        for m, x in got.items()
                    )
                    print(f"{design} epoch {e} {'neighbour' if noisy else 'quiet'}: {shown}")
            for design in designs:
                summarise(design, rows[design], seconds[design])
        finally:
            refs.unload_all()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
