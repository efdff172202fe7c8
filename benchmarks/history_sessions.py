"""History mode over real sessions (issue 20): every session a pytest run of its own, with
its own embedded server, in a temporary git project.

    python benchmarks/history_sessions.py                # busy, 6 + 3 + 10 + 3 sessions
    python benchmarks/history_sessions.py --model dicty --unchanged 5

1. ``--base`` sessions of the model at the base commit, each saved (``--triton-perf-save``);
2. ``--changed`` sessions at a commit with ``--effect`` % more work, each saved;
3. ``triton-perf history`` over the record: where it finds change points (expected: one, at
   the first changed commit, of about ``--effect`` %, none among the base sessions);
4. ``--unchanged`` sessions at the changed commit, compared (``--triton-perf-compare``): an
   alarm is a regression or a suspected regression on any metric;
5. ``--candidate`` sessions at a commit with ``--candidate-effect`` % more work again,
   compared: they should never ``pass`` p50.

Prints each session's verdicts and a summary; ``--json`` writes everything.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gate_quality import MODELS, write_model

TEST = """
import pytest


@pytest.mark.sla(p99_ms=5000)
def test_model(triton_perf):
    triton_perf.measure("{model}", concurrency={concurrency})
"""


def _git(project: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=b", "-c", "user.email=b@b", *args],
        cwd=project,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def _set_model(project: Path, model: str, factor: float) -> str:
    """The model at ``factor`` times its work, committed; returns the commit."""
    repo = project / "models"
    shutil.rmtree(repo / model, ignore_errors=True)
    write_model(repo, MODELS[model], model, factor)
    _git(project, "add", ".")
    _git(project, "commit", "-qm", f"work x{factor:g}", "--allow-empty")
    return _git(project, "rev-parse", "HEAD")


def _session(project: Path, name: str, args: argparse.Namespace, *flags: str) -> dict[str, Any]:
    out = project / "out" / f"{name}.json"
    t0 = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--triton-perf-window-s={args.window_s}",
            f"--triton-perf-compare-windows={args.windows}",
            f"--triton-perf-json={out}",
            *flags,
        ],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "TRITON_PERF_SESSION": name},
    )
    wall = time.perf_counter() - t0
    if not out.exists():
        raise RuntimeError(f"session {name} wrote no results:\n{proc.stdout[-3000:]}")
    (m,) = json.loads(out.read_text())["measurements"]
    comps = {c["metric"]: c for c in m.get("comparisons") or []}
    lat = m["result"]["latency_ms"]
    return {
        "session": name,
        "returncode": proc.returncode,
        "wall_s": round(wall, 1),
        "p50_ms": lat["p50"],
        "throughput": m["result"]["throughput"],
        "verdicts": {k: c["verdict"] for k, c in comps.items()},
        "change_pct": {k: c.get("change_pct") for k, c in comps.items()},
        "suspected": sorted(k for k, c in comps.items() if "suspected" in (c.get("note") or "")),
        "notes": {k: c.get("note") for k, c in comps.items()},
    }


def _alarm(s: dict[str, Any]) -> bool:
    return "regression" in s["verdicts"].values() or any(
        s["notes"][k].startswith("suspected regression") for k in s["suspected"]
    )


def _line(s: dict[str, Any]) -> str:
    v = " ".join(
        f"{k}={s['verdicts'][k]}"
        + (f"({s['change_pct'][k]:+.1f}%)" if s["change_pct"].get(k) is not None else "")
        + ("*" if k in s["suspected"] else "")
        for k in sorted(s["verdicts"])
    )
    return f"  {s['session']:<14} p50 {s['p50_ms']:6.2f} ms  {s['wall_s']:5.1f} s  {v}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="busy")
    parser.add_argument("--base", type=int, default=6)
    parser.add_argument("--changed", type=int, default=3)
    parser.add_argument("--unchanged", type=int, default=10)
    parser.add_argument("--candidate", type=int, default=3)
    parser.add_argument("--effect", type=float, default=20.0)
    parser.add_argument("--candidate-effect", type=float, default=10.0)
    parser.add_argument("--window-s", type=float, default=1.0)
    parser.add_argument("--windows", type=int, default=8)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    spec = MODELS[args.model]
    root = Path(tempfile.mkdtemp(prefix="history-sessions-"))
    project = root / "project"
    (project / "models").mkdir(parents=True)
    (project / "pytest.ini").write_text("[pytest]\ntriton_model_repository = models\n")
    (project / "test_perf.py").write_text(
        TEST.format(model=args.model, concurrency=spec.concurrency)
    )
    _git(project, "init", "-q")
    print(f"history_sessions: {args.model}, project in a temporary directory", flush=True)
    sessions: dict[str, list[dict[str, Any]]] = {}
    try:
        base = _set_model(project, args.model, 1.0)
        changed_factor = 1 + args.effect / 100
        phases = [("base", args.base, 1.0), ("changed", args.changed, changed_factor)]
        commits = {}
        for phase, count, factor in phases:
            commits[phase] = base if phase == "base" else _set_model(project, args.model, factor)
            print(f"{phase}: {count} saved session(s) at {commits[phase][:10]}", flush=True)
            for i in range(count):
                s = _session(project, f"{phase}-{i + 1}", args, "--triton-perf-save")
                sessions.setdefault(phase, []).append(s)
                print(_line(s), flush=True)
        proc = subprocess.run(
            [sys.executable, "-m", "pytest_triton_perf", "history", "--json", "history.json"],
            cwd=project,
            capture_output=True,
            text=True,
            timeout=300,
        )
        print(proc.stdout, proc.stderr, flush=True)
        analysis = json.loads((project / "history.json").read_text())
        p50 = next(s for s in analysis["series"] if s["metric"] == "p50_ms")
        print("unchanged: compared sessions at the changed commit", flush=True)
        for i in range(args.unchanged):
            s = _session(project, f"unchanged-{i + 1}", args, "--triton-perf-compare")
            sessions.setdefault("unchanged", []).append(s)
            print(_line(s), flush=True)
        factor = changed_factor * (1 + args.candidate_effect / 100)
        commits["candidate"] = _set_model(project, args.model, factor)
        print(f"candidate: +{args.candidate_effect:g}% more work, compared", flush=True)
        for i in range(args.candidate):
            s = _session(project, f"candidate-{i + 1}", args, "--triton-perf-compare")
            sessions.setdefault("candidate", []).append(s)
            print(_line(s), flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    cps = p50["change_points"]
    at_change = [c for c in cps if c["commit"] == commits["changed"]]
    early = [c for c in cps if c["index"] < args.base]
    alarms = sum(_alarm(s) for s in sessions.get("unchanged", []))
    passes = sum(s["verdicts"].get("p50_ms") == "pass" for s in sessions.get("candidate", []))
    print("\nsummary")
    found = "; ".join(
        f"index {c['index']} {c['commit'][:10]} {c['change_pct']:+.1f}% "
        f"[{c['ci_pct'][0]:+.1f}%, {c['ci_pct'][1]:+.1f}%] p={c['p_value']:.3f}"
        for c in cps
    )
    print(f"  change points on p50: {found or 'none'}")
    print(f"  at the first +{args.effect:g}% commit: {'yes' if at_change else 'NO'}")
    print(f"  among the {args.base} base sessions: {len(early)}")
    print(f"  unchanged sessions with an alarm: {alarms}/{len(sessions.get('unchanged', []))}")
    print(
        f"  +{args.candidate_effect:g}% candidate sessions passing p50: "
        f"{passes}/{len(sessions.get('candidate', []))}"
    )
    if args.json:
        args.json.write_text(
            json.dumps({"sessions": sessions, "history": analysis, "commits": commits}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
