"""Gate quality of co-location, measured: false alarms and detections of the A/B gate on
models measured together (``triton_perf.measure_together`` with ``--triton-perf-baseline-
ref``), on a CPU-bound neighbour beside a light victim.

Usage::

    python benchmarks/colocation_gate_quality.py --quick        # 2 + 2 trials, a few minutes
    python benchmarks/colocation_gate_quality.py --trials 12    # the diary's run (~25 min)
    python benchmarks/colocation_gate_quality.py --trials 12 --effects 0,50,100 --json co.json

One embedded Triton server (the local launcher) and two models, copies written into
temporary model repositories:

- the *victim* ``simple_co``: the example's ``simple`` (a tiny Python-backend model),
  closed loop at concurrency 2, unchanged in every trial;
- the *neighbour* ``busy_aa`` / ``busy_pN``: the suite's CPU-bound ``busy`` model
  (``loop_iterations`` pure-Python steps per request), open loop at ``--rate`` requests/s,
  so that more work per request takes more of the cores from the victim (a closed-loop
  neighbour would take a whole core whatever its work). In ``busy_pN`` the candidate's copy
  does N% more work; its reference copy does the base work.

``--modes ab`` (default ``ab,history``). Every group measurement runs through the plugin's
gate pipeline, as ``measure_together`` does: the :class:`Together` subject measured by
:meth:`GatePipeline.run` (A/B: a pipeline with the reference copies; history: one with
``compare=True`` and the store; the stored runs: one with no comparison), its records judged
by :func:`evaluate_test`. In A/B mode each trial is one group measurement as the plugin
makes it (:func:`colocation.measure_together_ab`: ``--rounds`` pairs of the reference group
and the candidate group, the order alternating, each arm's models alone and together in
blocks of ``--block-s``), with fresh arms (unloaded and loaded again) for every trial. In
history mode (``--triton-perf-compare``) ``--history-runs`` group measurements of the base
pair (:func:`colocation.measure_together`: the windows together, then ``--history-rounds``
interference rounds) are stored in a temporary :class:`BaselineStore` first; each trial
measures the group with the trial's neighbour (reported under the base neighbour's name, as
a changed model keeps its name) and is compared with the stored runs, as the plugin does (all
trials run in one process: each stored run counts as a session, a shift is a suspicion that
the next trial may confirm). What is counted:

- *false alarm* (A/A, effect 0): any metric of either model a regression;
- *victim's cost detected* (effect N): the victim's ``colocation_throughput`` or
  ``colocation_p99`` a regression, i.e. the gate saw that the unchanged victim suffers more
  beside its changed neighbour, the case only a co-location gate can see;
- *neighbour detected*: any metric of the neighbour a regression (its own, expected);
- *inconclusive*: the victim's co-location metrics undecided.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import json
import shlex
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from gate_quality import (  # noqa: E402
    REPO,
    ABArms,
    ModelSpec,
    _context,
    machine,
    mean_ci,
    write_model,
)

from pytest_triton_perf import colocation, options  # noqa: E402
from pytest_triton_perf.baseline.ab import ABPlan  # noqa: E402
from pytest_triton_perf.baseline.compare import GateSettings  # noqa: E402
from pytest_triton_perf.baseline.reference import ReferenceModels  # noqa: E402
from pytest_triton_perf.baseline.store import BaselineStore  # noqa: E402
from pytest_triton_perf.gate import GatePipeline, Measured, evaluate_test  # noqa: E402
from pytest_triton_perf.gate.subjects import Together  # noqa: E402
from pytest_triton_perf.measure.engine import MeasureSettings, measure_group  # noqa: E402
from pytest_triton_perf.measure.result import PerfResult  # noqa: E402
from pytest_triton_perf.server.local import LocalTritonServer  # noqa: E402
from pytest_triton_perf.sla import label as measurement_label  # noqa: E402
from pytest_triton_perf.verdicts import (  # noqa: E402
    INCONCLUSIVE,
    REGRESSION,
    Comparison,
    MeasurementRecord,
)

VICTIM = ModelSpec("simple", REPO / "example_repo" / "models" / "simple", "", 2)
NEIGHBOUR = ModelSpec("busy", REPO / "tests" / "models" / "busy", "loop_iterations", 1)
VICTIM_NAME = "simple_co"
COST = ("colocation_throughput", "colocation_p99")


def load_client(server: LocalTritonServer) -> Any:
    import tritonclient.http

    return tritonclient.http.InferenceServerClient(server.http_url, network_timeout=120.0)


def neighbour_name(effect: int) -> str:
    return "busy_aa" if effect == 0 else f"busy_p{effect}"


def build(root: Path, effects: Sequence[int]) -> tuple[Path, Path]:
    """(server repository, reference repository)."""
    import shutil

    server_repo, ref_repo = root / "models", root / "reference"
    for repo in (server_repo, ref_repo):
        repo.mkdir()
        dest = repo / VICTIM_NAME
        shutil.copytree(VICTIM.source, dest, ignore=shutil.ignore_patterns("__pycache__"))
        config = dest / "config.pbtxt"
        config.write_text(config.read_text().replace('name: "simple"', f'name: "{VICTIM_NAME}"'))
    for effect in effects:
        write_model(server_repo, NEIGHBOUR, neighbour_name(effect), 1 + effect / 100)
        write_model(ref_repo, NEIGHBOUR, neighbour_name(effect), 1.0)
    return server_repo, ref_repo


def _group_loads(neighbour: str, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    return {
        VICTIM_NAME: {"concurrency": VICTIM.concurrency},
        neighbour: {"request_rate": args.rate},
    }


def _run_group(
    server: LocalTritonServer, group: Mapping[str, Mapping[str, Any]], s: MeasureSettings
) -> dict[str, PerfResult]:
    """The engine's group measurement on ``server`` (the ``run`` colocation takes)."""
    return measure_group(server, group, settings=s)


def _group(server: LocalTritonServer, neighbour: str, args: argparse.Namespace) -> Together:
    """The victim beside ``neighbour`` as the gate pipeline's subject, as
    ``triton_perf.measure_together`` makes it: in A/B mode ``--rounds`` pairs of groups, in
    history mode (and when storing) the windows together, then ``--history-rounds``
    interference rounds."""
    return Together(
        _group_loads(neighbour, args),
        functools.partial(_run_group, server),
        MeasureSettings(),
        block_s=args.block_s,
        rounds=args.history_rounds,
        ab_rounds=args.rounds,
        interference=True,
    )


def _roles(records: Sequence[MeasurementRecord]) -> dict[str, dict[str, Comparison]]:
    """The comparisons of the victim's and the neighbour's record, by metric."""
    return {
        role: {c.metric: c for c in record.comparisons}
        for role, record in zip(("victim", "neighbour"), records, strict=True)
    }


def ab_trial(
    server: LocalTritonServer,
    arms: ABArms,
    effect: int,
    args: argparse.Namespace,
    gate: GateSettings,
) -> dict[str, Any]:
    """One A/B group measurement with fresh arms, through the plugin's gate pipeline (the
    :class:`Together` subject against the reference copies), judged by
    :func:`evaluate_test`."""
    neighbour = neighbour_name(effect)
    t0 = time.perf_counter()
    for m in (VICTIM_NAME, neighbour):
        arms.fresh(m)
    load_s = time.perf_counter() - t0
    context = _context(None, gate)
    pipeline = GatePipeline(context, references=arms.refs)
    # The group's design is its own (``ab_rounds``); the plan only puts the pipeline in A/B.
    measured = pipeline.run(_group(server, neighbour, args), gate=gate, plan=ABPlan())
    victim = measured[0]
    if victim.reference is None or victim.ab_design is None:
        raise RuntimeError(f"the group was not compared: {victim.reference_note}")
    verdict = evaluate_test(f"colocation_gate_quality[{neighbour}]", None, measured, context)
    comps = _roles(verdict.records)
    ratios = {
        arm: r.interference.throughput_ratio if r.interference else None
        for arm, r in (("reference", victim.reference), ("candidate", victim.result))
    }
    return {
        "mode": "ab",
        "effect": effect,
        "verdicts": {r: {m: c.verdict for m, c in cs.items()} for r, cs in comps.items()},
        "change_pct": {r: {m: c.change_pct for m, c in cs.items()} for r, cs in comps.items()},
        "victim_throughput_ratio": ratios,
        "elapsed_s": victim.ab_design["elapsed_s"],
        "load_s": load_s,
    }


HISTORY_TEST = "benchmarks/colocation_gate_quality.py::history"


def _as_base(measured: list[Measured]) -> list[Measured]:
    """The group's records (victim, neighbour) under the base pair's names, as a changed
    model keeps its name."""
    base = neighbour_name(0)
    for m, (name, beside) in zip(measured, ((VICTIM_NAME, base), (base, VICTIM_NAME)), strict=True):
        m.result = m.result.renamed(name, together_with=[beside])
    return measured


def build_history(
    server: LocalTritonServer, store: BaselineStore, args: argparse.Namespace
) -> None:
    """``--history-runs`` group measurements of the base pair, through the pipeline with no
    comparison, each saved as an accepted run."""
    context = _context(store, GateSettings())
    for i in range(args.history_runs):
        measured = GatePipeline(context).run(_group(server, neighbour_name(0), args))
        for m in _as_base(measured):
            r = m.result
            store.save(
                context.key,
                HISTORY_TEST,
                measurement_label(r),
                {"date": dt.datetime.now(dt.timezone.utc).isoformat(), "result": r.to_dict()},
                workload=r.workload.to_dict(),
                environment={},
            )
        print(f"  stored group run {i + 1}/{args.history_runs}", flush=True)


def history_trial(
    server: LocalTritonServer,
    store: BaselineStore,
    effect: int,
    args: argparse.Namespace,
    gate: GateSettings,
) -> dict[str, Any]:
    """One group measurement with the trial's neighbour compared with the stored runs
    through the plugin's gate pipeline in history mode, judged by :func:`evaluate_test`
    (in this one process a shift is a suspicion that the next trial may confirm)."""
    neighbour = neighbour_name(effect)
    context = _context(store, gate)
    t0 = time.perf_counter()
    measured = GatePipeline(context, compare=True).run(_group(server, neighbour, args))
    verdict = evaluate_test(HISTORY_TEST, None, _as_base(measured), context)
    comps = _roles(verdict.records)
    if not comps["victim"]:
        raise RuntimeError(f"history mode found no baseline: {verdict.records[0].baseline}")
    victim = measured[0].result.interference
    return {
        "mode": "history",
        "effect": effect,
        "verdicts": {r: {m: c.verdict for m, c in cs.items()} for r, cs in comps.items()},
        "change_pct": {r: {m: c.change_pct for m, c in cs.items()} for r, cs in comps.items()},
        "victim_throughput_ratio": {"candidate": victim.throughput_ratio if victim else None},
        "elapsed_s": time.perf_counter() - t0,
        "load_s": 0.0,
    }


def alarms(t: Mapping[str, Any], role: str, metrics: Sequence[str] | None = None) -> bool:
    verdicts = t["verdicts"][role]
    return any(v == REGRESSION for m, v in verdicts.items() if metrics is None or m in metrics)


def undecided(t: Mapping[str, Any]) -> bool:
    return any(t["verdicts"]["victim"].get(m) == INCONCLUSIVE for m in COST)


def table(trials: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = [
        "| mode | neighbour work | trials | any regression | victim's co-location cost regressed | "
        "victim's cost inconclusive | neighbour regressed | victim throughput cost change "
        "(mean [95%]) | victim p99 cost change | s per trial |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for mode, effect in dict.fromkeys((t["mode"], t["effect"]) for t in trials):
        rows = [t for t in trials if t["effect"] == effect and t["mode"] == mode]
        n = len(rows)
        lines.append(
            f"| {mode} | {'A/A' if effect == 0 else f'+{effect}%'} | {n} "
            f"| {sum(alarms(t, 'victim') or alarms(t, 'neighbour') for t in rows)}/{n} "
            f"| {sum(alarms(t, 'victim', COST) for t in rows)}/{n} "
            f"| {sum(undecided(t) for t in rows)}/{n} "
            f"| {sum(alarms(t, 'neighbour') for t in rows)}/{n} "
            f"| {mean_ci([t['change_pct']['victim'].get('colocation_throughput') for t in rows])} "
            f"| {mean_ci([t['change_pct']['victim'].get('colocation_p99') for t in rows])} "
            f"| {sum(t['elapsed_s'] + t['load_s'] for t in rows) / n:.0f} |"
        )
    return lines


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="2 trials per effect, 6 rounds")
    p.add_argument("--trials", type=int, default=None, help="trials per effect (12)")
    p.add_argument("--effects", default="0,50", help="neighbour work +N%%, 0 = A/A (0,50)")
    p.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="pairs per trial (10; an odd number is raised by one, as the plugin does: "
        "half the pairs with the candidate first)",
    )
    p.add_argument("--rate", type=float, default=60.0, help="neighbour requests/s (60)")
    p.add_argument("--block-s", type=float, default=options.default("block_s"))
    p.add_argument("--modes", default="ab,history", help="ab, history or both (ab,history)")
    p.add_argument("--history-runs", type=int, default=None, help="stored group runs (5)")
    p.add_argument("--history-rounds", type=int, default=colocation.INTERFERENCE_ROUNDS)
    p.add_argument("--json", type=Path, default=None, help="write every trial here")
    args = p.parse_args(argv)
    args.trials = args.trials or (2 if args.quick else 12)
    args.rounds = args.rounds or (6 if args.quick else 10)
    args.history_runs = args.history_runs or (2 if args.quick else 5)
    args.mode_list = [m for m in args.modes.split(",") if m]
    if not args.mode_list or any(m not in ("ab", "history") for m in args.mode_list):
        p.error(f"--modes={args.modes!r}: 'ab', 'history' or 'ab,history' is accepted")
    try:
        args.effect_list = [int(x) for x in args.effects.split(",")]
    except ValueError:
        p.error(f"--effects={args.effects!r}: comma-separated whole percentages are accepted")
    if any(e < 0 for e in args.effect_list) or args.trials < 1 or args.rounds < 2:
        p.error("--effects >= 0, --trials >= 1 and --rounds >= 2 are accepted")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    gate = GateSettings()
    print(f"command: {' '.join(shlex.quote(a) for a in [sys.executable, *sys.argv])}")
    print(f"machine: {machine()}")
    print(f"date:    {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M:%S} UTC")
    print(
        f"settings: {args.trials} trials per effect {args.effect_list}, {args.rounds} pairs, "
        f"blocks of {args.block_s:g} s; victim {VICTIM_NAME} conc={VICTIM.concurrency}, "
        f"neighbour busy at {args.rate:g}/s",
        flush=True,
    )
    trials: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="co-gate-")))
        server_repo, ref_repo = build(root, args.effect_list)
        server = LocalTritonServer([server_repo], models=[], startup_timeout_s=300.0)
        stack.enter_context(server)
        refs = ReferenceModels(server, ref_repo, origin="benchmark", candidates=[server_repo])
        stack.callback(refs.unload_all)
        arms = ABArms(refs)
        store = BaselineStore(root / "baselines")
        if "history" in args.mode_list:
            # History mode measures the models the server loads itself.
            for name in [VICTIM_NAME, *(neighbour_name(e) for e in args.effect_list)]:
                load_client(server).load_model(name)
            build_history(server, store, args)
        for mode in args.mode_list:
            for i in range(args.trials):
                for effect in args.effect_list:
                    if mode == "ab":
                        t = ab_trial(server, arms, effect, args, gate)
                    else:
                        t = history_trial(server, store, effect, args, gate)
                    trials.append(t)
                    v = t["verdicts"]
                    print(
                        f"  {mode} trial {i + 1}/{args.trials} effect {effect:>3}%: victim "
                        + ", ".join(f"{m} {v['victim'].get(m)}" for m in COST)
                        + f"; neighbour {sorted(set(v['neighbour'].values()))}; "
                        + f"{t['elapsed_s']:.0f} s",
                        flush=True,
                    )
    print()
    print("\n".join(table(trials)))
    if args.json is not None:
        args.json.write_text(json.dumps(trials, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
