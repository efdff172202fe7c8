"""Racing against successive halving and the grid: one server, one run, the order of the
strategies alternated.

Usage::

    .venv/bin/python benchmarks/search_race.py [--repeats 2] [--window-s 2] [--json F]

The model is issue 23's held-out one, ``benchmarks/models/wait`` (a Python model that waits
10 ms per request, no batching): ``n`` instances serve at most ``n`` x 100 requests/s
whatever the cores do, so the right answer is known in advance. Two questions, objective
``throughput`` at a fixed load: ``instance_count`` in 1..3 at concurrency 4 (3 candidates,
the committed configuration among them) and in 1..6 at concurrency 8 (6 candidates; the
best two 17% apart). Each repetition runs ``run_search`` with ``strategy="race"``,
``"halving"`` and ``"grid"`` on the same embedded server, in a rotated order, with the
session's default windows unless ``--warmup-s`` / ``--windows`` / ``--window-s`` say
otherwise.

Printed per search: the wall time (loads and unloads included), the winner, the
candidates pruned and, for the race, its rounds; then per question the ratios of race to
halving and to grid in time (medians over the repetitions) and how often each strategy
picked the most instances (the known best).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import add_session_settings, session_settings  # noqa: E402

from pytest_triton_perf.search import run_search  # noqa: E402
from pytest_triton_perf.server.local import LocalTritonServer  # noqa: E402

STRATEGIES = ("race", "halving", "grid")
#: Question -> (instance counts, concurrency).
QUESTIONS = {"3 candidates": ((1, 2, 3), 4), "6 candidates": ((1, 2, 3, 4, 5, 6), 8)}


def one(
    server: LocalTritonServer, strategy: str, counts: Any, concurrency: int, settings: Any
) -> dict[str, Any]:
    """One search; its figures."""
    result = run_search(
        server,
        "wait",
        {"instance_count": list(counts)},
        objective="throughput",
        strategy=strategy,
        settings=settings,
        concurrency=concurrency,
        sla={"max_error_rate": 0},
    )
    best = result.best
    race = next((n for n in result.notes if n.startswith("race: ")), "")
    rounds = race.split(" round(s)")[0].removeprefix("race: ") if race else "-"
    return {
        "strategy": result.strategy,
        "wall_s": result.duration_s,
        "winner": best.values["instance_count"] if best is not None else None,
        "throughput": best.throughput if best is not None else None,
        "pruned": result.pruned,
        "rounds": rounds,
        "loads": result.cost.get("loads"),
        "notes": list(result.notes),
    }


def main() -> int:
    doc = __doc__ or ""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2, help="runs of each strategy (2)")
    add_session_settings(ap, "full-length")
    ap.add_argument("--json", type=Path, help="write every figure to this JSON file")
    args = ap.parse_args()
    settings = session_settings(args)
    report: dict[str, Any] = {
        "command": " ".join([sys.executable, *sys.argv]),
        "settings": {k: getattr(settings, k) for k in ("warmup_s", "windows", "window_s")},
        "runs": [],
    }
    print(f"{'question':>13} {'strategy':>8} {'wall s':>7} {'winner':>6} {'/s':>6} "
          f"{'pruned':>6} {'rounds':>6} {'loads':>5}")  # fmt: skip
    with LocalTritonServer([REPO / "benchmarks" / "models"], models=["wait"]) as server:
        run = 0
        for question, (counts, concurrency) in QUESTIONS.items():
            for _ in range(args.repeats):
                order = STRATEGIES[run % 3 :] + STRATEGIES[: run % 3]
                run += 1
                figures = {}
                for strategy in order:
                    f = one(server, strategy, counts, concurrency, settings)
                    figures[strategy] = f
                    print(
                        f"{question:>13} {strategy:>8} {f['wall_s']:>7.1f} {f['winner']!s:>6} "
                        f"{f['throughput'] or 0:>6.0f} {f['pruned']:>6} {f['rounds']:>6} "
                        f"{f['loads']!s:>5}",
                        flush=True,
                    )
                report["runs"].append({"question": question, "order": list(order), **figures})
    for question, (counts, _) in QUESTIONS.items():
        runs = [r for r in report["runs"] if r["question"] == question]
        for peer in ("halving", "grid"):
            ratios = [r["race"]["wall_s"] / r[peer]["wall_s"] for r in runs]
            same = sum(r["race"]["winner"] == r[peer]["winner"] for r in runs)
            print(
                f"{question}: race / {peer}, time "
                + ", ".join(f"{v:.2f}" for v in ratios)
                + f" (median {statistics.median(ratios):.2f}); same winner in {same} of "
                f"{len(runs)}"
            )
        right = {s: sum(r[s]["winner"] == max(counts) for r in runs) for s in STRATEGIES}
        print(
            f"{question}: picked {max(counts)} instances (the best): "
            + ", ".join(f"{s} {n} of {len(runs)}" for s, n in right.items())
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
