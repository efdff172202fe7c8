"""Our configuration search against Triton Model Analyzer 1.58: same model, same space, one run.

Usage::

    benchmarks/setup-perf-analyzer.sh      # perf_analyzer 2.49, which Model Analyzer drives
    benchmarks/setup-model-analyzer.sh     # Model Analyzer 1.58 in .bench/model_analyzer
    .venv/bin/python benchmarks/search_vs_model_analyzer.py [--questions wait,sleepy] [--json F]
    .venv/bin/python benchmarks/search_vs_model_analyzer.py --from-json out.json

Two questions, asked of both tools in one run, the order of the tools alternated from one
question to the next (ours first on the first, Model Analyzer first on the second, ...):

- ``wait`` (issue 23's held-out question, 3 configurations): ``benchmarks/models/wait``
  (Python backend, waits 10 ms per request, no batching), ``instance_count`` [1, 2, 3],
  p99 <= 60 ms. Target: at most 0.33x of Model Analyzer's time.
- ``sleepy`` (the README's, 8 configurations): ``example_repo/models/sleepy`` (Python
  backend, each execution sleeps 20 ms; committed: ``max_batch_size`` 8, one instance, no
  dynamic batching), ``instance_count`` [1, 2] x ``dynamic_batching`` [off, on] x
  ``max_batch_size`` [4, 8] (``--max-batch-sizes ""`` leaves the last out), p99 <= 50 ms
  (``--p99-ms``). Target: at most 0.2x of Model Analyzer's time.

The question, for both tools: the configuration with the most inferences/s while p99
stays within the bound.

1. **Ours**: ``pytest_triton_perf.search.run_search`` with ``objective="capacity"`` and
   ``sla={"p99_ms": bound}`` (the default strategy, ``predict``; ``--strategy halving`` or
   ``grid`` for the others) on the embedded server (the ``tritonserver`` of the
   nvidia-pytriton wheel, started by our local launcher). Wall time: from the server's
   start to the answer, stop included. Its cost (server-seconds, GPU-seconds) as the
   search reports it.
2. **Model Analyzer**: ``model-analyzer profile`` in its own virtual environment, a manual
   brute search (``model_config_parameters`` over the same space, MA's default concurrency
   sweep, objective ``perf_throughput`` under ``constraints: perf_latency_p99: max``): its
   best configuration under the p99 bound is its capacity answer. ``--triton-launch-mode
   local`` with ``triton_server_path`` pointing at a wrapper written at run time that execs
   the same pytriton ``tritonserver`` with our launcher's environment (library path, the
   PATH that leads the Python backend stub to our interpreter) and ``--backend-directory``
   (the wheel's backends with the stub of this Python). No GPU, no Docker engine. Its
   checkpoints, output model repository, reports and the server log go to a temporary
   directory removed afterwards. Wall time: the whole ``model-analyzer profile`` process;
   its server-seconds are at most that (one server at a time, restarted per configuration).
3. **Both winners' capacity by our engine, fine-grained**: a fresh server, each winner's
   ``config.pbtxt`` loaded as a copy of the model (``<model>__ma``, ``<model>__ours``), then
   ``pytest_triton_perf.capacity.find_capacity`` (growth, then bisection to concurrency 1,
   default windows) on each, alternating over ``--repeats``; the medians are compared.

Targets (issue 23): our time at most the question's share of Model Analyzer's; our winner
the same as Model Analyzer's, or one whose fine-grained capacity is within ``--tolerance``
(3%) of Model Analyzer's winner's; and the capacity our search reported for its winner
within 5% (``REPORTED_WITHIN``) of its fine-grained capacity.

Every server either tool started is stopped before the script exits (the wrapper records
each server's pid; a leftover process group is killed and reported).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import tritonclient.http

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pytest_triton_perf.baseline.reference import (  # noqa: E402
    config_json,
    load_model_copy,
    unload_models,
)
from pytest_triton_perf.capacity import CapacityResult, find_capacity  # noqa: E402
from pytest_triton_perf.measure.engine import MeasureSettings  # noqa: E402
from pytest_triton_perf.measure.engine import measure as engine_measure  # noqa: E402
from pytest_triton_perf.measure.result import PerfResult  # noqa: E402
from pytest_triton_perf.search import STRATEGIES, run_search  # noqa: E402
from pytest_triton_perf.search.config import parse_config, values_of  # noqa: E402
from pytest_triton_perf.server.local import LocalTritonServer, find_tritonserver  # noqa: E402

#: The questions: model directory, space, p99 bound (ms), the share of Model Analyzer's
#: time ours may take.
QUESTIONS: dict[str, dict[str, Any]] = {
    "wait": {
        "dir": REPO / "benchmarks" / "models" / "wait",
        "space": {"instance_count": [1, 2, 3]},
        "p99_ms": 60.0,
        "time_share": 0.33,
    },
    "sleepy": {
        "dir": REPO / "example_repo" / "models" / "sleepy",
        "space": {"instance_count": [1, 2], "dynamic_batching": [False, True]},
        "p99_ms": 50.0,
        "time_share": 0.2,
    },
}
DEFAULT_MA = REPO / ".bench" / "model_analyzer" / "bin" / "model-analyzer"
DEFAULT_PA = REPO / ".bench" / "perf_analyzer" / "bin" / "perf_analyzer"
DEFAULT_CUDA_LIB = REPO / ".bench" / "perf_analyzer" / "lib"
#: How much lower than Model Analyzer's winner our winner's capacity may be and still count
#: as "the same configuration" (issue 23: 3%).
TOLERANCE = 0.03
#: How close the capacity our search reports must be to the fine-grained one.
REPORTED_WITHIN = 0.05
#: Model Analyzer's results table (written by ``profile`` under the export path).
MA_RESULTS = Path("results") / "metrics-model-inference.csv"
#: Where the server wrapper records the pid of each server it starts.
PIDS = "server.pids"
_BEST_LINE = re.compile(r"reports for the best configurations (?P<names>[\w,]+)")


# -- Model Analyzer ------------------------------------------------------------------------


def free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports (bound at once so that none repeats)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def write_server_wrapper(root: Path, model_dir: Path) -> Path:
    """A ``tritonserver`` for Model Analyzer's local launch mode: a shell script that execs
    the binary our local launcher finds (the nvidia-pytriton wheel's) with the launcher's
    environment and private backend directory, and records its pid in ``root/PIDS``
    so that a server Model Analyzer leaves behind can be stopped."""
    # The launcher's own preparation, without starting a server: the backend directory with
    # the stub for this interpreter, and the environment that leads the stub to this venv.
    root.mkdir(parents=True, exist_ok=True)
    launcher = LocalTritonServer([model_dir.parent])
    launcher.install = find_tritonserver()
    launcher._workdir = root  # where _prepare_backends puts backends/
    backends = launcher._prepare_backends()
    env = launcher._environment()
    lines = ["#!/bin/sh"]
    for key in ("PATH", "LD_LIBRARY_PATH", "VIRTUAL_ENV"):
        if key in env:
            lines.append(f"export {key}={shlex.quote(env[key])}")
    lines.append(f'echo "$$" >> {shlex.quote(str(root / PIDS))}')
    args = [str(launcher.install.binary)]
    if backends is not None:
        args.append(f"--backend-directory={backends}")
    lines.append(f'exec {" ".join(shlex.quote(a) for a in args)} "$@"')
    wrapper = root / "tritonserver"
    wrapper.write_text("\n".join(lines) + "\n")
    wrapper.chmod(0o755)
    return wrapper


def ma_model_config_parameters(space: Mapping[str, Sequence[Any]]) -> dict[str, Any]:
    """The space in Model Analyzer's ``model_config_parameters`` (a manual brute search).

    ``dynamic_batching: [{}, null]``: ``{}`` enables the batcher and null leaves the field
    out (MA skips a None value when it applies a combination). ``{}`` must come first: MA
    1.58 looks into the list's first item for ``max_queue_delay_microseconds``.
    """
    params: dict[str, Any] = {
        "instance_group": [{"kind": "KIND_CPU", "count": list(space["instance_count"])}]
    }
    if "max_batch_size" in space:
        params["max_batch_size"] = list(space["max_batch_size"])
    if "dynamic_batching" in space:
        choices = space["dynamic_batching"]
        params["dynamic_batching"] = [{} for on in choices if on] + [
            None for on in choices if not on
        ]
    return params


def ma_config(
    root: Path,
    model: str,
    *,
    wrapper: Path,
    perf_analyzer: Path,
    space: Mapping[str, Sequence[Any]],
    p99_ms: float,
    max_concurrency: int | None,
) -> dict[str, Any]:
    """Model Analyzer's ``profile`` configuration (YAML; JSON is YAML)."""
    http, grpc, metrics = free_ports(3)
    config: dict[str, Any] = {
        "model_repository": str(root / "repo"),
        "checkpoint_directory": str(root / "checkpoints"),
        "output_model_repository_path": str(root / "output_models"),
        "override_output_model_repository": True,
        "export_path": str(root / "export"),
        "triton_launch_mode": "local",
        "triton_server_path": str(wrapper),
        "triton_output_path": str(root / "triton.log"),
        "perf_analyzer_path": str(perf_analyzer),
        "triton_http_endpoint": f"127.0.0.1:{http}",
        "triton_grpc_endpoint": f"127.0.0.1:{grpc}",
        "triton_metrics_url": f"http://127.0.0.1:{metrics}/metrics",
        "client_protocol": "grpc",
        "run_config_search_mode": "brute",
        "profile_models": {model: {"model_config_parameters": ma_model_config_parameters(space)}},
        "objectives": ["perf_throughput"],
        "constraints": {"perf_latency_p99": {"max": p99_ms}},
    }
    if max_concurrency is not None:
        config["run_config_search_max_concurrency"] = max_concurrency
    return config


def stop_leftover_servers(pids_file: Path) -> list[int]:
    """Kill the process group of every server the wrapper started that still runs (Model
    Analyzer starts each in a session of its own); returns their pids."""
    left: list[int] = []
    if not pids_file.exists():
        return left
    for pid in {int(p) for p in pids_file.read_text().split()}:
        try:
            os.killpg(pid, 0)
        except (ProcessLookupError, PermissionError):
            continue
        left.append(pid)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    return sorted(left)


def run_model_analyzer(
    binary: Path,
    root: Path,
    config: Mapping[str, Any],
    *,
    cuda_lib: Path | None,
    timeout_s: float,
) -> dict[str, Any]:
    """Run ``model-analyzer profile``; its wall time, winner and every measurement."""
    cfg_path = root / "model_analyzer.yaml"
    cfg_path.write_text(json.dumps(config, indent=1))
    env = dict(os.environ)
    if cuda_lib is not None:  # perf_analyzer links libcudart even without a GPU
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (str(cuda_lib), env.get("LD_LIBRARY_PATH")) if p
        )
    log_path = root / "model_analyzer.log"
    cmd = [str(binary), "profile", "-f", str(cfg_path)]
    started = time.perf_counter()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        try:
            code = proc.wait(timeout=timeout_s)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        finally:
            # perf_analyzer runs in MA's group; the server in a session of its own.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            pids = Path(config["triton_server_path"]).parent / PIDS
            leftovers = stop_leftover_servers(pids)
    wall_s = time.perf_counter() - started
    text = log_path.read_text(errors="replace")
    if code != 0:
        raise RuntimeError(f"model-analyzer profile exited with {code}:\n{text[-3000:]}")
    results = root / "export" / MA_RESULTS
    if not results.exists():
        raise RuntimeError(f"model-analyzer wrote no {MA_RESULTS}:\n{text[-3000:]}")
    with results.open() as f:
        rows = list(csv.DictReader(f))
    measurements: list[dict[str, Any]] = [
        {
            "config": row["Model Config Path"],
            "concurrency": int(row["Concurrency"]),
            "throughput": float(row["Throughput (infer/sec)"]),
            "p99_ms": float(row["p99 Latency (ms)"]),
            "satisfies_constraints": row["Satisfies Constraints"].strip().lower() == "yes",
        }
        for row in rows
    ]
    # MA's table lists configurations best first (and each one's measurements best first);
    # the first measurement that satisfies the constraints is its answer.
    winner = next((m for m in measurements if m["satisfies_constraints"]), None)
    best_line = _BEST_LINE.search(text)
    ranked = best_line["names"].split(",") if best_line else []
    if winner is not None and ranked and ranked[0] != winner["config"]:
        print(
            f"note: MA's reports name {ranked[0]} best, its table {winner['config']}; "
            f"taking the table's",
            file=sys.stderr,
        )
    config_pbtxt = None
    values = None
    if winner is not None:
        pbtxt = root / "output_models" / winner["config"] / "config.pbtxt"
        config_pbtxt = pbtxt.read_text()
        values = values_of(parse_config(pbtxt), ma_space_keys(config))
    configs = sorted({m["config"] for m in measurements})
    return {
        "wall_s": wall_s,
        "measurements": measurements,
        "configs_measured": configs,
        "ranked": ranked,
        "winner": winner,
        "values": values,
        "config_pbtxt": config_pbtxt,
        "server_starts": len(pids.read_text().split()) if pids.exists() else 0,
        "leftover_servers": leftovers,
        "log_tail": text[-1500:],
    }


def ma_space_keys(config: Mapping[str, Any]) -> list[str]:
    """Our space's keys for what a Model Analyzer configuration sweeps."""
    (params,) = [m["model_config_parameters"] for m in config["profile_models"].values()]
    keys = ["instance_count"]
    keys += [k for k in ("dynamic_batching", "max_batch_size") if k in params]
    return keys


# -- ours ----------------------------------------------------------------------------------


def run_ours(
    root: Path,
    model: str,
    space: Mapping[str, Sequence[Any]],
    *,
    p99_ms: float,
    strategy: str,
    max_concurrency: int | None,
    verbose: bool,
) -> dict[str, Any]:
    """Our search on the embedded server: its wall time (server start and stop included),
    winner and the whole SearchResult."""
    timeline: list[dict[str, Any]] = []

    def counted(model: str, *, settings: MeasureSettings, **kwargs: Any) -> PerfResult:
        began = time.perf_counter()
        try:
            return engine_measure(server, model, settings=settings, **kwargs)
        finally:
            timeline.append(
                {
                    "model": model,
                    "concurrency": kwargs.get("concurrency"),
                    "length": f"{settings.windows}x{settings.window_s:g} s",
                    "s": time.perf_counter() - began,
                }
            )

    say: Callable[[str], None] = (
        (lambda line: print(f"  ours: {line}", flush=True)) if verbose else (lambda line: None)
    )
    started = time.perf_counter()
    with LocalTritonServer([root / "repo"], models=[model]) as server:
        search_started = time.perf_counter()
        result = run_search(
            server,
            model,
            {k: list(v) for k, v in space.items()},
            objective="capacity",
            sla={"p99_ms": p99_ms},
            strategy=strategy,
            limit=max_concurrency,
            measure=counted,
            notify=say,
        )
        search_s = time.perf_counter() - search_started
    wall_s = time.perf_counter() - started
    best = result.best
    return {
        "wall_s": wall_s,
        "search_s": search_s,
        "measurements": len(timeline),
        "timeline": timeline,
        "winner": best.name if best else None,
        "values": dict(best.values) if best else None,
        "capacity": best.capacity if best else None,
        "p99_ms": best.p99_ms if best else None,
        "config_pbtxt": best.config_pbtxt if best else None,
        "prediction": dict(best.prediction) if best and best.prediction else None,
        "cost": dict(result.cost),
        "tie": result.tie,
        "search": result.to_dict(),
    }


# -- both winners by our engine ------------------------------------------------------------


def measure_capacities(
    root: Path,
    model: str,
    configs: Mapping[str, str],
    *,
    p99_ms: float,
    repeats: int,
    max_concurrency: int | None,
) -> dict[str, list[dict[str, Any]]]:
    """Load each winner's configuration as a copy of the model on a fresh server and find
    its capacity with our engine, alternating A B B A ... over ``repeats``."""
    out: dict[str, list[dict[str, Any]]] = {arm: [] for arm in configs}
    src = root / "repo" / model
    with LocalTritonServer([root / "repo"], models=[model]) as server:
        client = tritonclient.http.InferenceServerClient(server.http_url)
        names = {arm: f"{model}__{arm}" for arm in configs}
        try:
            for arm, text in configs.items():
                pbtxt = root / f"{arm}.pbtxt"
                pbtxt.write_text(text)
                load_model_copy(
                    client, src, names[arm], config_json(parse_config(pbtxt), names[arm])
                )
            arms = list(configs)
            for k in range(repeats):
                for arm in arms if k % 2 == 0 else arms[::-1]:
                    name = names[arm]

                    def one(level: Mapping[str, float], name: str = name) -> PerfResult:
                        return engine_measure(server, name, concurrency=int(level["concurrency"]))

                    res: CapacityResult = find_capacity(
                        one, {"p99_ms": p99_ms}, limit=max_concurrency, model=name
                    )
                    print(
                        f"  capacity of {arm}'s winner: {fmt_rate(res.capacity)} at concurrency "
                        f"{fmt_num(res.load)} ({res.limited_by}, {len(res.steps)} steps, "
                        f"{res.duration_s:.0f} s)",
                        flush=True,
                    )
                    out[arm].append(res.to_dict())
        finally:
            unload_models(client, list(names.values()), 60.0)
            client.close()
    return out


# -- the table -----------------------------------------------------------------------------


def fmt_rate(value: float | None) -> str:
    """Inferences/s, or a dash."""
    return "-" if value is None else f"{value:.0f}/s"


def fmt_num(value: float | None) -> str:
    """A number without trailing zeros, or a dash."""
    return "-" if value is None else f"{value:g}"


def describe(values: Mapping[str, Any] | None) -> str:
    """``instance_count=2, dynamic_batching=True, max_batch_size=8``, or "none"."""
    if not values:
        return "none (no configuration holds the bound)"
    return ", ".join(f"{k}={v}" for k, v in values.items())


def median_capacity(runs: Sequence[Mapping[str, Any]]) -> float | None:
    """Median capacity over the repeats (None counts as 0)."""
    if not runs:
        return None
    return statistics.median([r["capacity"] or 0.0 for r in runs])


def verdict(report: Mapping[str, Any]) -> dict[str, Any]:
    """Whether the question's targets are met: Model Analyzer's winner (or one within
    ``tolerance`` of its capacity), in at most the question's share of its time, with our
    reported capacity within REPORTED_WITHIN of the fine-grained one."""
    ma, ours = report["model_analyzer"], report["ours"]
    caps = report.get("capacity", {})
    cap_ma, cap_ours = median_capacity(caps.get("ma", [])), median_capacity(caps.get("ours", []))
    keys = set(ma["values"] or {}) & set(ours["values"] or {})
    same = bool(keys) and all(ma["values"][k] == ours["values"][k] for k in keys)
    if same:
        config_ok, how = True, "the same configuration"
    elif ma["values"] is None:
        config_ok, how = ours["values"] is not None, "Model Analyzer found none"
    elif cap_ma is None or cap_ours is None:
        config_ok, how = False, "another configuration, capacities not measured"
    else:
        config_ok = cap_ours >= cap_ma * (1 - report["tolerance"])
        how = (
            f"another configuration, capacity {cap_ours:.0f}/s vs {cap_ma:.0f}/s "
            f"({cap_ours / cap_ma - 1:+.1%}; "
            + ("better or within" if config_ok else "worse by more than")
            + f" {report['tolerance']:.0%})"
        )
    share = ours["wall_s"] / ma["wall_s"]
    limit = report.get("time_share", 1 / 3)
    time_ok = share <= limit
    reported = ours.get("capacity")
    reported_error = reported / cap_ours - 1 if reported is not None and cap_ours else None
    reported_ok = reported_error is not None and abs(reported_error) <= REPORTED_WITHIN
    return {
        "met": config_ok and time_ok and reported_ok,
        "config_ok": config_ok,
        "config": how,
        "time_ok": time_ok,
        "time_share": share,
        "time_limit": limit,
        "reported_ok": reported_ok,
        "reported_error": reported_error,
    }


def print_table(report: Mapping[str, Any]) -> None:
    """The comparison table and the target line of one question."""
    ma, ours = report["model_analyzer"], report["ours"]
    caps = report.get("capacity", {})
    w = ma["winner"] or {}
    cost = ours.get("cost") or {}
    prediction = ours.get("prediction") or {}
    rows = [
        ("wall time to the answer", f"{ma['wall_s']:.1f} s", f"{ours['wall_s']:.1f} s"),
        (
            "  of which searching",
            "(whole process)",
            f"{ours['search_s']:.1f} s",
        ),
        (
            "server-seconds / GPU-seconds",
            f"<= {ma['wall_s']:.0f} / - (no GPU)",
            f"{cost.get('server_s', 0):.0f} / "
            + ("- (no GPU)" if cost.get("gpu_s") is None else f"{cost['gpu_s']:.0f}"),
        ),
        (
            "measurements",
            f"{len(ma['measurements'])} ({len(ma['configs_measured'])} configs, "
            f"{ma['server_starts']} server starts)",
            f"{ours['measurements']} levels ({len(ours['search']['candidates'])} candidates, "
            f"{ours['search']['pruned']} pruned, {cost.get('loads', '?')} loads)",
        ),
        ("winner", describe(ma["values"]), describe(ours["values"])),
        ("  named", ma["winner"]["config"] if ma["winner"] else "-", ours["winner"] or "-"),
        (
            "  by its own tool",
            f"{fmt_rate(w.get('throughput'))} at concurrency {fmt_num(w.get('concurrency'))}, "
            f"p99 {fmt_num(w.get('p99_ms'))} ms",
            f"{fmt_rate(ours['capacity'])}, p99 "
            + ("-" if ours["p99_ms"] is None else f"{ours['p99_ms']:.1f}")
            + " ms",
        ),
    ]
    if prediction:
        error = prediction.get("error")
        rows.append(
            (
                "  predicted (ours)",
                "",
                f"{fmt_rate(prediction.get('capacity'))} at concurrency "
                f"{fmt_num(prediction.get('load'))}"
                + ("" if error is None else f"; measured {error:+.1%} where checked")
                + ("" if prediction.get("held") else " (fell back to the full search)"),
            )
        )
    if ours.get("tie"):
        rows.append(("  tie", "", str(ours["tie"])))
    lengths: dict[str, list[float]] = {}
    for m in ours.get("timeline", []):
        lengths.setdefault(m["length"], []).append(m["s"])
    for length, spent in lengths.items():
        rows.append((f"  ours at {length} windows", "", f"{len(spent)} levels, {sum(spent):.1f} s"))
    if caps:
        cells = []
        for arm in ("ma", "ours"):
            runs = caps.get(arm, [])
            each = ", ".join(
                f"{fmt_rate(r['capacity'])} @{fmt_num(r['load'])} ({r['limited_by']})" for r in runs
            )
            cells.append(f"{fmt_rate(median_capacity(runs))} (median of: {each})")
        rows.append(("capacity by our engine, fine-grained", cells[0], cells[1]))
    head = ("", "Model Analyzer 1.58 (brute)", f"ours ({report['strategy']})")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(3)]
    print()
    print(f"{report['model']}, space {report['space']}, p99 <= {report['p99_ms']:g} ms")
    for r in [head, *rows]:
        print("  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip())
    v = verdict(report)
    err = v["reported_error"]
    print(
        f"\ntarget: Model Analyzer's winner (or within {report['tolerance']:.0%} of its "
        f"capacity) in at most {v['time_limit']:.2f}x its time, our reported capacity within "
        f"{REPORTED_WITHIN:.0%} of the fine-grained one: {'met' if v['met'] else 'MISSED'} "
        f"(ours took {v['time_share']:.2f}x MA's time; {v['config']}; reported capacity "
        + ("-" if err is None else f"{err:+.1%}")
        + " on the fine-grained)"
    )


# -- main ----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--model-analyzer",
        type=Path,
        default=None,
        help="model-analyzer (else $MODEL_ANALYZER, .bench/model_analyzer/bin/model-analyzer)",
    )
    ap.add_argument(
        "--perf-analyzer",
        type=Path,
        default=None,
        help="perf_analyzer 2.49 (else $PERF_ANALYZER, .bench/perf_analyzer/bin/perf_analyzer)",
    )
    ap.add_argument(
        "--cuda-lib",
        type=Path,
        default=None,
        help="directory holding libcudart.so.12 (default .bench/perf_analyzer/lib)",
    )
    ap.add_argument(
        "--questions",
        default="wait,sleepy",
        help="the questions, in this order (wait: 3 configurations; sleepy: 8)",
    )
    ap.add_argument(
        "--p99-ms", type=float, default=None, help="the p99 bound (default: the question's)"
    )
    ap.add_argument(
        "--max-batch-sizes",
        default="4,8",
        help="max_batch_size values of sleepy's space ('4,8'; '' leaves the key out)",
    )
    ap.add_argument("--strategy", default="predict", choices=STRATEGIES)
    ap.add_argument(
        "--max-concurrency",
        type=int,
        default=None,
        help="highest concurrency either tool tries (default: each tool's own)",
    )
    ap.add_argument(
        "--repeats", type=int, default=2, help="capacity searches per winner by our engine (2)"
    )
    ap.add_argument(
        "--tolerance",
        type=float,
        default=TOLERANCE,
        help="capacity short of MA's winner's still counted as the same (0.03)",
    )
    ap.add_argument(
        "--order",
        choices=("ours-first", "ma-first"),
        default="ours-first",
        help="which tool runs first on the first question (then alternated)",
    )
    ap.add_argument("--ma-timeout-s", type=float, default=3600.0)
    ap.add_argument("--json", type=Path, help="write every figure to this JSON file")
    ap.add_argument("--from-json", type=Path, help="print the tables of a saved run and exit")
    ap.add_argument("-v", "--verbose", action="store_true", help="our search's progress lines")
    return ap.parse_args(argv)


def executable(given: Path | None, env_var: str, default: Path, setup: str) -> Path:
    """The tool's path, or exit with what to run."""
    for candidate in (given, os.environ.get(env_var), default):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate).resolve()
    sys.exit(f"{default.name} not found: run {setup}, or pass its path (or set ${env_var})")


def ask(
    name: str,
    position: int,
    args: argparse.Namespace,
    tools: Mapping[str, Any],
) -> dict[str, Any]:
    """One question to both tools, in the order of ``position``; then both winners'
    fine-grained capacity."""
    question = QUESTIONS[name]
    model_dir: Path = question["dir"]
    model = model_dir.name
    space: dict[str, list[Any]] = {k: list(v) for k, v in question["space"].items()}
    if name == "sleepy" and args.max_batch_sizes.strip():
        space["max_batch_size"] = [int(v) for v in args.max_batch_sizes.split(",")]
    p99 = args.p99_ms if args.p99_ms is not None else question["p99_ms"]
    report: dict[str, Any] = {
        "question": name,
        "model": model,
        "space": space,
        "p99_ms": p99,
        "strategy": args.strategy,
        "tolerance": args.tolerance,
        "time_share": question["time_share"],
        "max_concurrency": args.max_concurrency,
    }
    root = Path(tempfile.mkdtemp(prefix="search-vs-ma-"))
    try:
        shutil.copytree(
            model_dir, root / "repo" / model, ignore=shutil.ignore_patterns("__pycache__")
        )

        def ma() -> None:
            print(f"[{name}] Model Analyzer: manual brute search ...", flush=True)
            wrapper = write_server_wrapper(root / "ma_server", model_dir)
            config = ma_config(
                root,
                model,
                wrapper=wrapper,
                perf_analyzer=tools["pa"],
                space=space,
                p99_ms=p99,
                max_concurrency=args.max_concurrency,
            )
            report["model_analyzer"] = run_model_analyzer(
                tools["ma"], root, config, cuda_lib=tools["cuda_lib"], timeout_s=args.ma_timeout_s
            )
            r = report["model_analyzer"]
            print(f"  {r['wall_s']:.1f} s, winner {describe(r['values'])}", flush=True)
            if r["leftover_servers"]:
                print(f"  killed servers MA left behind: {r['leftover_servers']}", flush=True)

        def ours() -> None:
            print(f"[{name}] ours: run_search ({args.strategy}) ...", flush=True)
            report["ours"] = run_ours(
                root,
                model,
                space,
                p99_ms=p99,
                strategy=args.strategy,
                max_concurrency=args.max_concurrency,
                verbose=args.verbose,
            )
            r = report["ours"]
            print(f"  {r['wall_s']:.1f} s, winner {describe(r['values'])}", flush=True)

        first_ours = (position % 2 == 0) == (args.order == "ours-first")
        report["order"] = "ours-first" if first_ours else "ma-first"
        for step in (ours, ma) if first_ours else (ma, ours):
            step()
        configs = {
            arm: report[key]["config_pbtxt"]
            for arm, key in (("ma", "model_analyzer"), ("ours", "ours"))
            if report[key]["config_pbtxt"]
        }
        if configs:
            print(f"[{name}] capacity of both winners by our engine ...", flush=True)
            report["capacity"] = measure_capacities(
                root,
                model,
                configs,
                p99_ms=p99,
                repeats=args.repeats,
                max_concurrency=args.max_concurrency,
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report["verdict"] = verdict(report)
    return report


def main(argv: Sequence[str] | None = None) -> None:
    """Ask every question of both tools, then the capacity checks; print the tables."""
    args = parse_args(argv)
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        for report in saved.get("questions", [saved]):
            print_table(report)
        return
    names = [n.strip() for n in args.questions.split(",") if n.strip()]
    unknown = [n for n in names if n not in QUESTIONS]
    if unknown:
        sys.exit(f"--questions: unknown {', '.join(unknown)}; known: {', '.join(QUESTIONS)}")
    tools = {
        "ma": executable(
            args.model_analyzer, "MODEL_ANALYZER", DEFAULT_MA, "benchmarks/setup-model-analyzer.sh"
        ),
        "pa": executable(
            args.perf_analyzer, "PERF_ANALYZER", DEFAULT_PA, "benchmarks/setup-perf-analyzer.sh"
        ),
        "cuda_lib": args.cuda_lib or (DEFAULT_CUDA_LIB if DEFAULT_CUDA_LIB.is_dir() else None),
    }
    run: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_at_start": os.getloadavg(),
        },
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "questions": [],
    }
    for position, name in enumerate(names):
        run["questions"].append(ask(name, position, args, tools))
        if args.json:  # kept as it goes: a long run that fails later keeps what it had
            args.json.write_text(json.dumps(run, indent=1, default=str))
    for report in run["questions"]:
        print_table(report)
    if args.json:
        args.json.write_text(json.dumps(run, indent=1, default=str))
        print(f"\nsaved to {args.json}")


if __name__ == "__main__":
    main()
