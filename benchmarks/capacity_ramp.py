"""Capacity over a request rate: the ramp (one pass, one steady level) against the search
(doubling, then bisection), same model, same server, one run.

Usage::

    .venv/bin/python benchmarks/capacity_ramp.py [--instances 1,3] [--rounds 1] [--json F]

The model is issue 23's held-out one, ``benchmarks/models/wait`` (a Python model that waits
10 ms per request, no batching): ``n`` instances serve at most ``n`` x 100 requests/s
whatever the cores do, so the knee is known in advance. Each instance count is loaded as a
copy (``wait_x<n>``) through the repository API. For each, ``find_capacity`` runs over
``request_rate`` under ``p99_ms <= --p99-ms`` (60), as ``triton_perf.capacity(...,
over="request_rate")`` runs it (the session's default windows unless ``--window-s`` /
``--windows`` / ``--warmup-s`` say otherwise; levels after the first warm up for 0.5 s),
once with ``method="search"`` and once with ``method="ramp"``, the order alternated from one
run to the next so that drift of the shared machine hits both alike.

Printed per run: the wall time of each method, its capacity (inferences/s at the level
found), the levels it measured at full length and the ramp's buckets; then the ratios
(ramp / search) of time and capacity, and their medians over the runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import add_session_settings, session_settings  # noqa: E402

from pytest_triton_perf.capacity import (  # noqa: E402
    CapacityResult,
    find_capacity,
    level_settings,
)
from pytest_triton_perf.measure.engine import (  # noqa: E402
    MeasureSettings,
    measure,
    measure_ramp,
)
from pytest_triton_perf.measure.ramp import RampPlan, RampRun  # noqa: E402
from pytest_triton_perf.measure.result import PerfResult  # noqa: E402
from pytest_triton_perf.server.local import LocalTritonServer  # noqa: E402

MODEL_DIR = REPO / "benchmarks" / "models" / "wait"
METHODS = ("search", "ramp")


def load_copy(server: LocalTritonServer, instances: int) -> str:
    """``wait`` with ``instances`` instances, loaded as ``wait_x<n>``."""
    import tritonclient.http
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2

    config = text_format.Parse(
        (MODEL_DIR / "config.pbtxt").read_text(), model_config_pb2.ModelConfig()
    )
    name = f"wait_x{instances}"
    config.name = name
    config.instance_group[0].count = instances
    files = {"file:1/model.py": (MODEL_DIR / "1" / "model.py").read_bytes()}
    client = tritonclient.http.InferenceServerClient(server.http_url, network_timeout=120)
    try:
        client.load_model(name, config=json_format.MessageToJson(config), files=files)
    finally:
        client.close()
    return name


def capacity(
    server: LocalTritonServer,
    model: str,
    method: str,
    settings: MeasureSettings,
    bounds: Mapping[str, float],
) -> tuple[CapacityResult, float]:
    """One capacity of ``model`` by ``method``, levels set up as the fixture sets them
    (:func:`level_settings`); its wall time (s)."""
    calls = [0]

    def next_settings() -> MeasureSettings:
        calls[0] += 1
        return level_settings(settings, calls[0] - 1)

    def level(load: Mapping[str, Any]) -> PerfResult:
        return measure(server, model, settings=next_settings(), **load)

    def ramp(plan: RampPlan, breaks: Callable[[PerfResult], bool]) -> RampRun:
        return measure_ramp(server, model, plan, breaks, settings=next_settings())

    began = time.perf_counter()
    found = find_capacity(level, bounds, over="request_rate", model=model, method=method, ramp=ramp)
    return found, time.perf_counter() - began


def row(found: CapacityResult, wall_s: float) -> dict[str, Any]:
    """What is printed and kept of one capacity."""
    return {
        "wall_s": round(wall_s, 2),
        "capacity": found.capacity,
        "load": found.load,
        "limited_by": found.limited_by,
        "levels": len(found.levels),
        "ramp_buckets": len(found.steps) - len(found.levels),
        "notes": list(found.notes),
    }


def main() -> int:
    doc = __doc__ or ""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--instances", default="1,3", help="instance counts, comma-separated (1,3)")
    ap.add_argument("--rounds", type=int, default=1, help="runs of each method per count (1)")
    ap.add_argument("--p99-ms", type=float, default=60.0, help="the latency bound (60)")
    add_session_settings(ap, "a level's")
    ap.add_argument("--json", type=Path, help="write every figure to this JSON file")
    args = ap.parse_args()
    settings = session_settings(args)
    bounds = {"p99_ms": args.p99_ms}
    counts = [int(x) for x in args.instances.split(",") if x]
    report: dict[str, Any] = {
        "command": " ".join([sys.executable, *sys.argv]),
        "settings": {
            "warmup_s": settings.warmup_s,
            "windows": settings.windows,
            "window_s": settings.window_s,
        },
        "bounds": bounds,
        "runs": [],
    }
    ratios: dict[str, list[float]] = {"time": [], "capacity": []}
    print(
        f"{'instances':>9} {'method':>7} {'wall s':>7} {'capacity':>9} {'at rate':>9} "
        f"{'levels':>6} {'buckets':>7}"
    )
    with LocalTritonServer([REPO / "benchmarks" / "models"], models=["wait"]) as server:
        run = 0
        for n in counts:
            model = load_copy(server, n)
            for _ in range(args.rounds):
                order = METHODS if run % 2 == 0 else METHODS[::-1]
                run += 1
                figures = {}
                for method in order:
                    found, wall_s = capacity(server, model, method, settings, bounds)
                    figures[method] = row(found, wall_s)
                    f = figures[method]
                    print(
                        f"{n:>9} {method:>7} {wall_s:>7.1f} {f['capacity'] or 0:>9.1f} "
                        f"{f['load'] or 0:>9.1f} {f['levels']:>6} {f['ramp_buckets']:>7}",
                        flush=True,
                    )
                s, r = figures["search"], figures["ramp"]
                ratios["time"].append(r["wall_s"] / s["wall_s"])
                if s["capacity"] and r["capacity"]:
                    ratios["capacity"].append(r["capacity"] / s["capacity"])
                report["runs"].append({"instances": n, "order": list(order), **figures})
    for what, values in ratios.items():
        if values:
            print(
                f"ramp / search, {what}: "
                + ", ".join(f"{v:.2f}" for v in values)
                + f" (median {statistics.median(values):.2f})"
            )
    report["ratios"] = ratios
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
