"""How the perf gate scales over runners: the example suite as one shard against the same
suite split over N shards run at once (``--triton-perf-shard=K/N``, merged with
``triton-perf merge``), as the perf-gate workflow's matrix runs it.

Usage::

    python benchmarks/shard_scaling.py [--shards 2] [--compare-windows 5] [--out results.json]

Every run is a gate run of the default branch: ``pytest example_repo --triton-perf-save``
(the example's own windows, ``--compare-windows`` per saved measurement) with its own
baseline directory, each process with its own embedded Triton server. Runs, in order:

1. one shard: the whole suite in one process; it also stores each test's duration in its
   baseline directory (``durations.json``), as a push to the default branch does;
2. N shards at once, without durations (a new history): the tests dealt out in the order of
   a hash of their ids, the same number per shard;
3. N shards at once, each from a copy of run 1's baseline directory: balanced by the stored
   durations (longest first onto the least loaded shard).

Here the shards run as N processes on one machine, stand-ins for N runners (as xdist workers
are: one server each); on a machine with fewer cores than the shards' servers and load
generators need, they slow each other down, which real runners would not. Reported: each
run's wall time (until its last shard ends), the speed-up over one shard, each shard's tests
and seconds, the merge's time, and whether the merged results hold every measurement of the
one-shard run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
EXAMPLE = REPO / "example_repo"


def _pytest(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    """A pytest process over the example, its output to ``log``."""
    out = log.open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", str(EXAMPLE), "-p", "no:cacheprovider", "-q", *args],
        cwd=REPO,
        stdout=out,
        stderr=subprocess.STDOUT,
    )


def _run(
    work: Path, name: str, shards: int, compare_windows: int, seed_dir: Path | None
) -> dict[str, Any]:
    """One gate run of ``shards`` processes at once; the figures of each."""
    procs = []
    started = time.monotonic()
    for k in range(1, shards + 1):
        base = work / f"{name}-{k}" / "baselines"
        base.parent.mkdir(parents=True)
        if seed_dir is not None:
            shutil.copytree(seed_dir, base)
        args = [
            "--triton-perf-save",
            f"--triton-perf-compare-windows={compare_windows}",
            f"--triton-perf-baseline-dir={base}",
            f"--triton-perf-json={base.parent / 'results.json'}",
        ]
        if shards > 1:
            args.append(f"--triton-perf-shard={k}/{shards}")
        procs.append((k, base.parent, _pytest(args, base.parent / "log.txt"), time.monotonic()))
    ended: dict[int, float] = {}
    while len(ended) < len(procs):  # each shard's own end, whichever ends first
        for k, _, proc, t0 in procs:
            if k not in ended and proc.poll() is not None:
                ended[k] = time.monotonic() - t0
        time.sleep(0.2)
    parts = []
    for k, where, proc, _ in procs:
        log = (where / "log.txt").read_text(errors="replace")
        summary = log.strip().splitlines()[-1] if log.strip() else ""
        shard_line = next((x for x in log.splitlines() if x.startswith("triton-perf: shard")), "")
        parts.append(
            {
                "shard": k,
                "seconds": round(ended[k], 1),
                "exit": proc.returncode,
                "summary": summary,
                "shard_line": shard_line,
                "measurements": len(
                    json.loads((where / "results.json").read_text())["measurements"]
                ),
            }
        )
    wall = time.monotonic() - started
    merge_s = None
    if shards > 1:
        t0 = time.monotonic()
        cmd = [sys.executable, "-m", "pytest_triton_perf", "merge", "-q"]
        cmd += [str(work / f"{name}-{k}" / "results.json") for k in range(1, shards + 1)]
        cmd += ["-o", str(work / f"{name}-merged.json")]
        for k in range(1, shards + 1):
            cmd += ["--baselines", str(work / f"{name}-{k}" / "baselines")]
        cmd += ["--baseline-dir", str(work / f"{name}-history")]
        merged = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        merge_s = round(time.monotonic() - t0, 1)
        parts.append({"merge": merged.returncode, "merge_output": merged.stdout[-2000:]})
    return {
        "name": name,
        "shards": shards,
        "wall_s": round(wall, 1),
        "merge_s": merge_s,
        "parts": parts,
    }


def _tests(summary: str) -> str:
    """``9 passed, 2 xfailed`` from pytest's last line."""
    m = re.search(r"(\d+ (?:passed|failed)[^=]*?) in ", summary)
    return m.group(1).strip(" ,") if m else summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--compare-windows", type=int, default=5)
    parser.add_argument("--out", type=Path, help="write the figures as JSON")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="shard-scaling-"))
    try:
        load_before = os.getloadavg()
        one = _run(work, "one", 1, args.compare_windows, None)
        hashed = _run(work, "hashed", args.shards, args.compare_windows, None)
        balanced = _run(
            work, "balanced", args.shards, args.compare_windows, work / "one-1" / "baselines"
        )
        load_after = os.getloadavg()
    finally:
        durations = work / "one-1" / "baselines" / "durations.json"
        stored = json.loads(durations.read_text()) if durations.exists() else None
        shutil.rmtree(work, ignore_errors=True)
    runs = [one, hashed, balanced]
    total = one["parts"][0]["measurements"]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, load average before "
        f"{load_before[0]:.1f}, after {load_after[0]:.1f}"
    )
    print("| run | wall time | speed-up | shards: tests, seconds | merge | measurements |")
    print("|---|---|---|---|---|---|")
    for run in runs:
        shards = [p for p in run["parts"] if "shard" in p]
        cells = "; ".join(f"{_tests(p['summary'])}, {p['seconds']:.0f} s" for p in shards)
        merged = sum(p["measurements"] for p in shards)
        label = {
            "one": "1 shard",
            "hashed": f"{run['shards']} shards, no durations stored",
            "balanced": f"{run['shards']} shards, balanced by stored durations",
        }[run["name"]]
        merge = f"{run['merge_s']:.1f} s" if run["merge_s"] is not None else "-"
        print(
            f"| {label} | {run['wall_s']:.0f} s | {one['wall_s'] / run['wall_s']:.2f}x | "
            f"{cells} | {merge} | {merged} of {total} |"
        )
    for run in runs:
        for p in run["parts"]:
            if p.get("shard_line"):
                print(p["shard_line"])
            if p.get("exit") or p.get("merge"):
                print(
                    f"{run['name']}: exit {p.get('exit', p.get('merge'))}: "
                    f"{p.get('summary') or p.get('merge_output')}"
                )
    if args.out:
        args.out.write_text(
            json.dumps(
                {"runs": runs, "durations": stored, "load": [load_before, load_after]}, indent=2
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
