"""The offset between two identical arms, per load: alternating blocks against duet runs.

Usage::

    python benchmarks/arm_offset.py --epochs 10            # both designs, about 4 minutes

One embedded server serves two copies of the CPU-bound ``busy`` model (``tests/models/busy``,
one instance, concurrency 2) loaded as A/B mode loads them (``ReferenceModels``: ``__ref``
and ``__cand``). For each design, ``--epochs`` load epochs (both copies unloaded and loaded
again, in a random order), a noisy neighbour (one core burned) in every other epoch, and
``--pairs`` pairs per epoch:

- ``alt``: A/B mode's design, blocks of 0.5 s alternating A B B A with a random first arm;
- ``duet``: both copies measured at the same time, each at its own load, in the same windows
  (Bulej et al., "Duet benchmarking", ICPE 2020).

Per epoch it prints the mean log-ratio (candidate / reference) of p50, p95 and throughput and
its within-epoch spread; at the end, per design and metric, the spread of the epoch means,
the pooled within-epoch spread and tau, the offset's own sd (DerSimonian-Laird: what
``triton-perf calibrate`` stores).
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import random
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import gate_quality as gq  # noqa: E402

from pytest_triton_perf.baseline.reference import (  # noqa: E402
    ReferenceModels,
    backend_processes,
)
from pytest_triton_perf.baseline.sequential import (  # noqa: E402
    EpochEstimate,
    offset_variance,
)
from pytest_triton_perf.measure.engine import MeasureSettings, measure, measure_group  # noqa: E402
from pytest_triton_perf.server.local import LocalTritonServer  # noqa: E402

BLOCK = MeasureSettings(warmup_s=0.1, windows=1, window_s=0.5, max_windows=1)
WARM = MeasureSettings(warmup_s=0.5, windows=1, window_s=0.5, max_windows=1)
METRICS = ("p50", "p95", "tp")


def ratios(a: object, b: object) -> dict[str, float]:
    la, lb = a.latency_ms, b.latency_ms  # type: ignore[attr-defined]
    return {
        "p50": math.log(lb.p50 / la.p50),
        "p95": math.log(lb.p95 / la.p95),
        "tp": math.log(b.throughput / a.throughput),  # type: ignore[attr-defined]
    }


def pin(server: LocalTritonServer, names: tuple[str, str], how: str) -> None:
    """Both arms' stubs on the last CPU (``same``), or the reference's on the first and the
    candidate's on the last (``apart``)."""
    last = max(os.sched_getaffinity(0))
    for i, name in enumerate(names):
        cpus = {last} if how == "same" else {min(os.sched_getaffinity(0)) if i == 0 else last}
        assert server.pid is not None
        found = backend_processes(server.pid, [name])
        if not found:
            raise RuntimeError(f"no backend process of '{name}' found to pin")
        for p in found:
            p.cpu_affinity(sorted(cpus))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--pairs", type=int, default=8)
    p.add_argument("--designs", default="alt,duet")
    p.add_argument(
        "--pin",
        default="off",
        choices=("off", "same", "apart"),
        help="pin both arms' backend processes to the last CPU (same) or each to a CPU of "
        "its own (apart) after every load",
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
            for design in args.designs.split(","):
                rows: list[dict[str, list[float]]] = []
                for e in range(args.epochs):
                    refs.reload(name, candidate_first=rng.random() < 0.5)
                    arms = refs.arms(name)
                    assert arms is not None
                    ref, cand, _ = arms
                    if args.pin != "off":
                        pin(server, (ref, cand), args.pin)
                    noisy = args.noisy == "always" or (args.noisy == "half" and e % 2 == 1)
                    if noisy:
                        neighbour.start()
                    try:
                        run = functools.partial(measure, server, concurrency=2)
                        run(ref, settings=WARM)
                        run(cand, settings=WARM)
                        got: dict[str, list[float]] = {m: [] for m in METRICS}
                        first = rng.randrange(2)
                        for i in range(args.pairs):
                            if design == "alt":
                                order = (first, 1 - first) if i % 2 == 0 else (1 - first, first)
                                res = {arm: run((ref, cand)[arm], settings=BLOCK) for arm in order}
                                a, b = res[0], res[1]
                            else:
                                both = measure_group(
                                    server,
                                    {ref: {"concurrency": 2}, cand: {"concurrency": 2}},
                                    settings=BLOCK,
                                )
                                a, b = both[ref], both[cand]
                            for m, v in ratios(a, b).items():
                                got[m].append(v)
                    finally:
                        neighbour.stop()
                    rows.append(got)
                    shown = ", ".join(
                        f"{m} {100 * np.mean(x):+.1f}% (sd {100 * np.std(x, ddof=1):.1f}%)"
                        for m, x in got.items()
                    )
                    print(f"{design} epoch {e} {'neighbour' if noisy else 'quiet'}: {shown}")
                for m in METRICS:
                    est = [
                        EpochEstimate(
                            float(np.mean(r[m])), float(np.var(r[m], ddof=1)) / len(r[m]), len(r[m])
                        )
                        for r in rows
                    ]
                    means = np.array([x.mean for x in est])
                    within = math.sqrt(np.mean([x.var * x.units for x in est]))
                    tau = math.sqrt(offset_variance(est))
                    print(
                        f"SUMMARY {design} {m}: epoch means sd {100 * means.std(ddof=1):.2f}%, "
                        f"within-epoch sd {100 * within:.2f}%, offset tau {100 * tau:.2f}%, "
                        f"mean {100 * means.mean():+.2f}%"
                    )
        finally:
            refs.unload_all()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
