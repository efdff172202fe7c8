"""Gate quality, measured: false-alarm and detection rates of the regression gate.

Usage::

    python benchmarks/gate_quality.py --quick                 # smoke run, a few minutes
    python benchmarks/gate_quality.py --trials 30 --modes ab  # the long A/B run
    python benchmarks/gate_quality.py --trials 30 --modes history --json history.json

One embedded Triton server (the local launcher) serves copies of the example model ``sleepy``
(a Python-backend model sleeping ``service_time_ms`` per execution) from a temporary model
repository: ``sleepy`` at the base service time, ``sleepy_aa`` (an identical copy, for A/B
A/A trials) and ``sleepy_pNN`` with the service time raised by configuration by NN percent.

- A/B mode: the reference is ``sleepy`` at the base service time, loaded from a separate
  temporary directory through :class:`ReferenceModels` (as ``sleepy__ref``); each trial is one
  :func:`measure_ab` call against a candidate (A/A copy, +10%, +20%, ...) and the plugin's
  verdict logic (:func:`evaluate_test`, i.e. ``compare_results(..., mode="ab")``).
- History mode: ``--history-runs`` measurements of ``sleepy`` are saved in a temporary
  :class:`BaselineStore`; each trial measures the candidate (``sleepy`` itself for A/A) under
  the stored model's name and goes through :func:`evaluate_test` with a re-measurement
  callback, exactly as the plugin's ``--triton-perf-compare`` does: a regression counts only
  when the confirming re-measurement regresses too.

A trial *alarms* when any gated metric (p50, p99, throughput, error rate) is a regression;
p50-only alarms are reported beside it. For the A/A effect (0%) an alarm is a false alarm, for
the others a detection. Effects are measured in a shuffled order inside each trial, so slow
drift of the machine is spread over all of them.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import functools
import json
import os
import platform
import random
import re
import shlex
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pytest_triton_perf.baseline.ab import BLOCK_WARMUP_S, measure_ab  # noqa: E402
from pytest_triton_perf.baseline.compare import (  # noqa: E402
    GateSettings,
    compare_results,
    noise,
    window_values,
)
from pytest_triton_perf.baseline.reference import ReferenceModels  # noqa: E402
from pytest_triton_perf.baseline.store import BaselineStore  # noqa: E402
from pytest_triton_perf.gate import GateContext, Measured, evaluate_test  # noqa: E402
from pytest_triton_perf.measure.engine import MeasureSettings, measure  # noqa: E402
from pytest_triton_perf.measure.result import PerfResult  # noqa: E402
from pytest_triton_perf.server.local import LocalTritonServer  # noqa: E402
from pytest_triton_perf.sla import label as measurement_label  # noqa: E402
from pytest_triton_perf.verdicts import (  # noqa: E402
    INCONCLUSIVE,
    REGRESSION,
    Comparison,
)

SOURCE_MODEL = REPO / "example_repo" / "models" / "sleepy"
BASE = "sleepy"
TEST_ID = "benchmarks/gate_quality.py::history"
#: Measurement seconds per trial the issue allows.
TRIAL_BUDGET_S = 30.0
MODES = ("ab", "history")
METRICS = ("p50_ms", "p99_ms", "throughput")

#: Defaults of the full run and of ``--quick`` (an explicit option wins over both).
DEFAULTS: dict[str, Any] = {
    "trials": 30,
    "blocks": 10,
    "window_s": 1.0,
    "warmup_s": 0.5,
    "history_runs": 5,
    "history_windows": 10,
}
QUICK: dict[str, Any] = {
    "trials": 3,
    "blocks": 5,
    "window_s": 0.5,
    "warmup_s": 0.3,
    "history_runs": 3,
    "history_windows": 4,
}


# --- model repositories ------------------------------------------------------------------


def candidate_name(effect: int, mode: str) -> str:
    """The model a trial measures: the A/A copy (A/B), the base itself (history), or +N%."""
    if effect == 0:
        return f"{BASE}_aa" if mode == "ab" else BASE
    return f"{BASE}_p{effect}"


def write_model(repo: Path, name: str, service_ms: float) -> Path:
    """A copy of the example ``sleepy`` model named ``name`` sleeping ``service_ms``."""
    dest = repo / name
    shutil.copytree(SOURCE_MODEL, dest, ignore=shutil.ignore_patterns("__pycache__"))
    config = dest / "config.pbtxt"
    text = config.read_text()
    text, n_name = re.subn(r'(?m)^name:\s*"[^"]*"', f'name: "{name}"', text)
    text, n_param = re.subn(
        r'(key:\s*"service_time_ms"\s*value:\s*\{\s*string_value:\s*)"[^"]*"',
        rf'\g<1>"{service_ms:g}"',
        text,
    )
    if n_name != 1 or n_param != 1:
        raise RuntimeError(f"{SOURCE_MODEL}/config.pbtxt no longer has the expected layout")
    config.write_text(text)
    return dest


def build_repositories(root: Path, base_ms: float, effects: Sequence[int]) -> tuple[Path, Path]:
    """(server repository with base, A/A copy and raised copies; reference repository)."""
    server_repo = root / "models"
    ref_repo = root / "reference"
    server_repo.mkdir()
    ref_repo.mkdir()
    write_model(server_repo, BASE, base_ms)
    write_model(ref_repo, BASE, base_ms)
    write_model(server_repo, candidate_name(0, "ab"), base_ms)
    for effect in effects:
        if effect != 0:
            write_model(server_repo, candidate_name(effect, "ab"), base_ms * (1 + effect / 100))
    return server_repo, ref_repo


# --- trials ------------------------------------------------------------------------------


@dataclass
class Trial:
    """One trial: the verdicts and the figures behind them."""

    mode: str
    effect: int
    index: int
    model: str
    verdicts: dict[str, str]
    baseline: dict[str, float | None]  # the baseline value each verdict compared with
    change_pct: dict[str, float | None]
    p_value: dict[str, float | None]
    noise: dict[str, float]  # window-to-window spread (MAD/median) per metric, both arms
    measure_s: float  # warm-ups and windows, the measurement time the budget counts
    wall_s: float  # what the trial took on the clock, engine overheads included
    load_1m: float | None = None  # the machine's 1-minute load average when the trial began
    first_verdicts: dict[str, str] | None = None  # history: before the re-measurement
    confirmed: bool | None = None  # history: a re-measurement ran
    windows: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def alarm(self) -> bool:
        """Any gated metric is a regression."""
        return REGRESSION in self.verdicts.values()

    @property
    def p50_alarm(self) -> bool:
        """The p50 verdict is a regression."""
        return self.verdicts.get("p50_ms") == REGRESSION

    @property
    def inconclusive(self) -> bool:
        """Some metric was too noisy to decide."""
        return INCONCLUSIVE in self.verdicts.values()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        d = dataclasses.asdict(self)
        d.update(alarm=self.alarm, p50_alarm=self.p50_alarm, inconclusive=self.inconclusive)
        return d


def _load() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def _spread(arms: Sequence[dict[str, Any]]) -> dict[str, float]:
    return {m: max(noise(window_values(a, m)) for a in arms) for m in METRICS}


def _windows(arms: dict[str, dict[str, Any]]) -> dict[str, dict[str, list[float]]]:
    return {name: {m: window_values(d, m) for m in METRICS} for name, d in arms.items()}


def _measure_s(results: Sequence[PerfResult], warmups_s: float) -> float:
    return warmups_s + sum(w.duration_s for r in results for w in r.windows)


def _by_metric(comps: Sequence[Comparison]) -> dict[str, Comparison]:
    return {c.metric: c for c in comps}


def _context(store: BaselineStore | None, gate: GateSettings) -> GateContext:
    return GateContext(key={"benchmark": "gate_quality"}, environment={}, store=store, gate=gate)


def ab_trial(
    run: Callable[..., PerfResult],
    reference: str,
    effect: int,
    index: int,
    args: argparse.Namespace,
    gate: GateSettings,
) -> Trial:
    """One interleaved A/B measurement against the reference, judged as the plugin does."""
    model = candidate_name(effect, "ab")
    load = _load()
    t0 = time.perf_counter()
    ref, cand = measure_ab(
        run,
        reference=reference,
        candidate=model,
        blocks=args.blocks,
        warmup_s=args.warmup_s,
        window_s=args.window_s,
    )
    wall = time.perf_counter() - t0
    verdict = evaluate_test(
        f"gate_quality::ab[{effect}]",
        None,
        [Measured(cand, "ab", reference=ref)],
        _context(None, gate),
    )
    comps = _by_metric(verdict.records[0].comparisons)
    warmups = 2 * args.warmup_s + (2 * args.blocks - 2) * min(args.warmup_s, BLOCK_WARMUP_S)
    arms = {"reference": ref.to_dict(), "candidate": cand.to_dict()}
    return Trial(
        mode="ab",
        effect=effect,
        index=index,
        model=model,
        verdicts={m: c.verdict for m, c in comps.items()},
        baseline={m: c.baseline for m, c in comps.items()},
        change_pct={m: c.change_pct for m, c in comps.items()},
        p_value={m: c.p_value for m, c in comps.items()},
        noise=_spread(list(arms.values())),
        measure_s=_measure_s([ref, cand], warmups),
        wall_s=wall,
        load_1m=load,
        windows=_windows(arms),
        notes=[*ref.notes, *cand.notes],
    )


def as_model(result: PerfResult, model: str) -> PerfResult:
    """``result`` under another model name, so it finds the stored runs of that model (the
    plugin's history mode compares a changed model under its unchanged name)."""
    return dataclasses.replace(
        result, model=model, workload=dataclasses.replace(result.workload, model=model)
    )


def history_trial(
    server: LocalTritonServer,
    store: BaselineStore,
    history: Sequence[dict[str, Any]],
    effect: int,
    index: int,
    args: argparse.Namespace,
    gate: GateSettings,
) -> Trial:
    """One measurement compared with the stored runs, confirmed by one re-measurement on a
    regression, through the plugin's own :func:`evaluate_test`."""
    model = candidate_name(effect, "history")
    load = _load()
    settings = MeasureSettings(
        warmup_s=args.warmup_s,
        windows=args.history_windows,
        window_s=args.window_s,
        max_windows=args.history_windows,
    )
    measured: list[PerfResult] = []

    def once() -> PerfResult:
        r = measure(server, model, concurrency=args.concurrency, protocol=args.protocol,
                    settings=settings)  # fmt: skip
        measured.append(r)
        return as_model(r, BASE)

    t0 = time.perf_counter()
    first = once()
    verdict = evaluate_test(
        TEST_ID, None, [Measured(first, "history", remeasure=once)], _context(store, gate)
    )
    wall = time.perf_counter() - t0
    comps = _by_metric(verdict.records[0].comparisons)
    if not comps:
        raise RuntimeError(f"history mode found no baseline: {verdict.records[0].baseline}")
    # The first measurement's own verdicts (pure, no new measurement): how often the
    # re-measurement was needed and what it overturned.
    first_comps = _by_metric(compare_results(history, first.to_dict(), gate, mode="history"))
    arms = {f"measurement{i}": r.to_dict() for i, r in enumerate(measured)}
    return Trial(
        mode="history",
        effect=effect,
        index=index,
        model=model,
        verdicts={m: c.verdict for m, c in comps.items()},
        baseline={m: c.baseline for m, c in comps.items()},
        change_pct={m: c.change_pct for m, c in comps.items()},
        p_value={m: c.p_value for m, c in comps.items()},
        noise=_spread(list(arms.values())),
        measure_s=_measure_s(measured, args.warmup_s * len(measured)),
        wall_s=wall,
        load_1m=load,
        first_verdicts={m: c.verdict for m, c in first_comps.items()},
        confirmed=len(measured) > 1,
        windows=_windows(arms),
        notes=[n for r in measured for n in r.notes] + [c.note for c in comps.values()],
    )


def build_history(
    server: LocalTritonServer, store: BaselineStore, args: argparse.Namespace, log: Callable
) -> list[dict[str, Any]]:
    """Measure the base model ``--history-runs`` times and save each as an accepted run."""
    settings = MeasureSettings(
        warmup_s=args.warmup_s,
        windows=args.history_windows,
        window_s=args.window_s,
        max_windows=args.history_windows,
    )
    history = []
    for i in range(args.history_runs):
        r = measure(
            server, BASE, concurrency=args.concurrency, protocol=args.protocol, settings=settings
        )
        d = r.to_dict()
        store.save(
            {"benchmark": "gate_quality"},
            TEST_ID,
            measurement_label(r),
            {"date": dt.datetime.now(dt.timezone.utc).isoformat(), "result": d},
            workload=r.workload.to_dict(),
            environment={},
        )
        history.append(d)
        lat = r.latency_ms
        log(
            f"  history run {i + 1}/{args.history_runs}: p50 {lat.p50 if lat else 0:.2f} ms, "
            f"p99 {lat.p99 if lat else 0:.2f} ms, {r.throughput:.1f}/s, "
            f"noise p50 {noise(window_values(d, 'p50_ms')):.1%}"
        )
    return history


# --- reporting ---------------------------------------------------------------------------


def machine() -> str:
    """Cores, CPU model, load average: the context every figure here depends on."""
    model = platform.processor() or "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (
        f"{cores} cores, {model}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, load average {load}"
    )


def _stat(values: Sequence[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.mean(values):.1f} / {statistics.median(values):.1f}"


def _median(values: Sequence[float | None]) -> str:
    present = [v for v in values if v is not None]
    return f"{statistics.median(present):+.1f}%" if present else "-"


def table(trials: Sequence[Trial], mode: str, effects: Sequence[int]) -> list[str]:
    """The per-effect table of one mode."""
    head = (
        f"{'effect':>6} {'trials':>6} {'alarms':>6} {'rate':>7} {'p50 alarms':>10} "
        f"{'inconcl.':>8} {'p50 change':>10} {'p99 change':>10} {'measure s':>13} "
        f"{'wall s':>13}"
    )
    lines = [head, "-" * len(head)]
    for effect in effects:
        ts = [t for t in trials if t.mode == mode and t.effect == effect]
        if not ts:
            continue
        alarms = sum(t.alarm for t in ts)
        lines.append(
            f"{f'+{effect}%':>6} {len(ts):>6} {alarms:>6} {alarms / len(ts):>7.1%} "
            f"{sum(t.p50_alarm for t in ts):>10} {sum(t.inconclusive for t in ts):>8} "
            f"{_median([t.change_pct.get('p50_ms') for t in ts]):>10} "
            f"{_median([t.change_pct.get('p99_ms') for t in ts]):>10} "
            f"{_stat([t.measure_s for t in ts]):>13} {_stat([t.wall_s for t in ts]):>13}"
        )
    lines.append("(alarms: trials with any gated metric a regression; rate: false-alarm rate for")
    lines.append(" +0%, detection rate otherwise; changes: medians; seconds: mean / median)")
    by_metric: dict[str, int] = {}
    for t in trials:
        if t.mode == mode:
            for m, v in t.verdicts.items():
                if v in (REGRESSION, INCONCLUSIVE):
                    key = f"+{t.effect}% {m} {v}"
                    by_metric[key] = by_metric.get(key, 0) + 1
    if by_metric:
        lines.append("verdicts by metric: " + ", ".join(f"{k} x{n}" for k, n in by_metric.items()))
    if mode == "history":
        first = [t for t in trials if t.mode == mode and t.first_verdicts]
        for effect in effects:
            ts = [t for t in first if t.effect == effect]
            if ts:
                raw = sum(REGRESSION in (t.first_verdicts or {}).values() for t in ts)
                lines.append(
                    f"  +{effect}%: first measurement regressed in {raw}/{len(ts)}, "
                    f"re-measured {sum(bool(t.confirmed) for t in ts)}, "
                    f"confirmed {sum(t.alarm for t in ts)}"
                )
    return lines


def targets(trials: Sequence[Trial], mode: str) -> str:
    """The issue's targets with PASS/MISS (rates, so that shorter runs are judged alike)."""

    def count(effect: int) -> tuple[int, int] | None:
        ts = [t for t in trials if t.mode == mode and t.effect == effect]
        return (sum(t.alarm for t in ts), len(ts)) if ts else None

    parts = []
    aa = count(0)
    if aa:
        ok = aa[0] / aa[1] <= 1 / 30
        parts.append(f"false alarms <= 1/30: {aa[0]}/{aa[1]} {'PASS' if ok else 'MISS'}")
    for effect, need in ((20, 29), (10, 24)):
        got = count(effect)
        if not got:
            continue
        if mode == "ab":
            ok = got[0] / got[1] >= need / 30
            parts.append(
                f"detects +{effect}% >= {need}/30: {got[0]}/{got[1]} {'PASS' if ok else 'MISS'}"
            )
        else:
            parts.append(f"detects +{effect}%: {got[0]}/{got[1]} (reported)")
    budget = [t.measure_s for t in trials if t.mode == mode]
    if budget:
        worst = max(budget)
        parts.append(
            f"measurement <= {TRIAL_BUDGET_S:g} s/trial: max {worst:.1f} s "
            f"{'PASS' if worst <= TRIAL_BUDGET_S else 'MISS'}"
        )
    return f"targets ({'A/B' if mode == 'ab' else 'history'}): " + "; ".join(parts)


# --- main --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Options; ``--quick`` changes the defaults, explicit options still win."""
    p = argparse.ArgumentParser(
        description=(
            "False-alarm and detection rates of the regression gate (A/B and history mode) "
            "on the embedded Triton server, with the example model 'sleepy' raised by "
            "configuration."
        ),
    )
    p.add_argument("--trials", type=int, help=f"trials per mode and effect ({DEFAULTS['trials']})")
    p.add_argument(
        "--modes", default="ab,history", help="comma-separated: ab, history (default: %(default)s)"
    )
    p.add_argument(
        "--effects",
        default="0,10,20",
        help="service-time increases in percent, 0 = A/A (default: %(default)s)",
    )
    p.add_argument("--blocks", type=int, help=f"A/B windows per arm ({DEFAULTS['blocks']})")
    p.add_argument("--window-s", type=float, help=f"window length ({DEFAULTS['window_s']})")
    p.add_argument(
        "--warmup-s",
        type=float,
        help=f"warm-up before a measurement and an arm's first block ({DEFAULTS['warmup_s']}); "
        f"later A/B blocks warm up min(this, {BLOCK_WARMUP_S}) s",
    )
    p.add_argument(
        "--history-runs", type=int, help=f"stored runs in the history ({DEFAULTS['history_runs']})"
    )
    p.add_argument(
        "--history-windows",
        type=int,
        help=f"windows per history measurement ({DEFAULTS['history_windows']})",
    )
    p.add_argument(
        "--concurrency", type=int, default=1, help="closed-loop concurrency (default: %(default)s)"
    )
    p.add_argument(
        "--protocol", choices=("grpc", "http"), default="grpc", help="(default: %(default)s)"
    )
    p.add_argument(
        "--base-ms",
        type=float,
        default=20.0,
        help="base service time of 'sleepy' in ms (default: %(default)s)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the effect order in each trial (default: %(default)s)",
    )
    p.add_argument("--json", type=Path, metavar="PATH", help="write per-trial verdicts, figures")
    p.add_argument("--quick", action="store_true", help="smoke run: " + str(QUICK))
    args = p.parse_args(argv)
    for key, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.mode_list = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in args.mode_list if m not in MODES]
    if bad or not args.mode_list:
        p.error(f"--modes: {args.modes!r}; accepted: {', '.join(MODES)} (comma-separated)")
    try:
        args.effect_list = sorted({int(e) for e in args.effects.split(",") if e.strip()})
    except ValueError:
        p.error(f"--effects: {args.effects!r} is not a list of integer percentages")
    if not args.effect_list or min(args.effect_list) < 0:
        p.error(f"--effects: {args.effects!r}; give integer percentages >= 0, e.g. 0,10,20")
    for key in ("trials", "blocks", "history_runs", "history_windows", "concurrency"):
        if getattr(args, key) < 1:
            p.error(f"--{key.replace('_', '-')} must be >= 1")
    if args.window_s <= 0 or args.warmup_s < 0 or args.base_ms <= 0:
        p.error("--window-s and --base-ms must be > 0, --warmup-s >= 0")
    if "history" in args.mode_list and args.history_runs < 3:
        print(
            "note: with fewer than 3 history runs compare.py falls back to Mann-Whitney "
            "against the pooled stored windows (no prediction interval)",
            file=sys.stderr,
        )
    return args


def _ab_one(
    run: Callable[..., PerfResult],
    reference: str,
    args: argparse.Namespace,
    gate: GateSettings,
    effect: int,
    index: int,
) -> Trial:
    return ab_trial(run, reference, effect, index, args, gate)


def _history_one(
    server: LocalTritonServer,
    store: BaselineStore,
    history: Sequence[dict[str, Any]],
    args: argparse.Namespace,
    gate: GateSettings,
    effect: int,
    index: int,
) -> Trial:
    return history_trial(server, store, history, effect, index, args, gate)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Run the trials; print tables and targets; 130 when interrupted (partial tables)."""
    args = parse_args(argv)

    def log(text: str) -> None:
        print(text, flush=True)

    command = " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv])
    log(f"command: {command}")
    log(f"machine: {machine()}")
    log(f"date:    {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M:%S} UTC")
    ab_warm = 2 * args.warmup_s + (2 * args.blocks - 2) * min(args.warmup_s, BLOCK_WARMUP_S)
    ab_nominal = 2 * args.blocks * args.window_s + ab_warm
    hist_nominal = args.warmup_s + args.history_windows * args.window_s
    log(
        f"settings: trials {args.trials}, effects {args.effect_list}, base {args.base_ms:g} ms, "
        f"concurrency {args.concurrency}, {args.protocol}, window {args.window_s:g} s, "
        f"warm-up {args.warmup_s:g} s"
    )
    if "ab" in args.mode_list:
        log(f"  A/B: {args.blocks} blocks per arm = {ab_nominal:.1f} s of measurement per trial")
    if "history" in args.mode_list:
        log(
            f"  history: {args.history_runs} stored runs x {args.history_windows} windows; "
            f"{hist_nominal:.1f} s per measurement, twice when a regression is re-measured"
        )
    for name, nominal in (("A/B", ab_nominal), ("history", hist_nominal)):
        if nominal > TRIAL_BUDGET_S:
            log(f"WARNING: {name} trials need {nominal:.1f} s > the {TRIAL_BUDGET_S:g} s budget")
    gate = GateSettings()
    log(
        f"gate: alpha {gate.alpha}, min effects {dict(gate.min_effect)}, floors "
        f"{dict(gate.floor)}, max noise {gate.max_noise}"
    )

    previous = signal.signal(signal.SIGTERM, _interrupt)
    rng = random.Random(args.seed)
    trials: list[Trial] = []
    interrupted = False
    stored: dict[str, Any] = {}  # history mode: the stored runs' window values
    started = time.perf_counter()
    try:
        with contextlib.ExitStack() as stack:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gate-quality-")))
            server_repo, ref_repo = build_repositories(root, args.base_ms, args.effect_list)
            log(f"starting the embedded server over {server_repo} ...")
            server = LocalTritonServer([server_repo], startup_timeout_s=300.0)
            stack.enter_context(server)
            log(f"  {server.describe()}")
            for mode in args.mode_list:
                log(f"\n== {mode} mode ==")
                if mode == "ab":
                    refs = ReferenceModels(server, ref_repo, origin=f"directory {ref_repo}")
                    stack.callback(refs.unload_all)
                    reference = refs.ensure(BASE)
                    assert reference is not None
                    run = functools.partial(
                        measure, server, concurrency=args.concurrency, protocol=args.protocol
                    )

                    one: Callable[[int, int], Trial] = functools.partial(
                        _ab_one, run, reference, args, gate
                    )
                else:
                    store = BaselineStore(root / "baselines")
                    log(f"building the history ({args.history_runs} runs of '{BASE}') ...")
                    history = build_history(server, store, args, log)
                    stored.update(_windows({f"run{i}": d for i, d in enumerate(history)}))

                    one = functools.partial(_history_one, server, store, history, args, gate)

                for i in range(args.trials):
                    order = list(args.effect_list)
                    rng.shuffle(order)
                    for effect in order:
                        t = one(effect, i)
                        trials.append(t)
                        log(_trial_line(t, args.trials))
    except KeyboardInterrupt:
        interrupted = True
        log("\ninterrupted: the server is stopped and the temporary files removed; partial results")
    finally:
        signal.signal(signal.SIGTERM, previous)

    elapsed = time.perf_counter() - started
    log(f"\n=== results ({elapsed / 60:.1f} min in all; machine now: {machine()}) ===")
    for mode in args.mode_list:
        if not any(t.mode == mode for t in trials):
            continue
        title = (
            f"A/B mode: {args.blocks} blocks per arm x {args.window_s:g} s"
            if mode == "ab"
            else f"history mode: {args.history_runs} stored runs, {args.history_windows} "
            f"windows x {args.window_s:g} s, confirm by one re-measurement"
        )
        log(f"\n{title}")
        for line in table(trials, mode, args.effect_list):
            log(line)
        log(targets(trials, mode))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "command": command,
            "machine": machine(),
            "settings": {
                k: v for k, v in vars(args).items() if k not in ("json",) and not callable(v)
            },
            "gate": {
                "alpha": gate.alpha,
                "min_effect": dict(gate.min_effect),
                "floor": dict(gate.floor),
                "max_noise": gate.max_noise,
            },
            "interrupted": interrupted,
            "history_runs": stored,
            "trials": [t.to_dict() for t in trials],
        }
        args.json.write_text(json.dumps(doc, indent=1, default=str) + "\n")
        log(f"wrote {args.json}")
    return 130 if interrupted else 0


def _trial_line(t: Trial, total: int) -> str:
    verdicts = " ".join(
        f"{m.removesuffix('_ms')}={v}"
        + (f"({t.change_pct[m]:+.1f}%)" if t.change_pct.get(m) is not None else "")
        for m, v in t.verdicts.items()
        if m in METRICS
    )
    extra = ""
    if t.first_verdicts is not None and t.confirmed:
        extra = " [re-measured]"
    return (
        f"  {t.mode} trial {t.index + 1}/{total} +{t.effect}% ({t.model}): "
        f"{'ALARM' if t.alarm else 'ok   '} {verdicts}; noise p50 {t.noise['p50_ms']:.1%} "
        f"p99 {t.noise['p99_ms']:.1%}; {t.measure_s:.1f} s measured, {t.wall_s:.1f} s wall; "
        f"load {t.load_1m if t.load_1m is not None else float('nan'):.1f}{extra}"
    )


if __name__ == "__main__":
    sys.exit(main())
