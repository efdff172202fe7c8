"""The verdicts of one test: SLA checks and baseline comparisons, turned into report records
and, when something is wrong, the one screen that fails the test. No pytest import."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pytest_triton_perf import sla
from pytest_triton_perf.baseline.key import config_hash
from pytest_triton_perf.gate.context import GateContext, Measured
from pytest_triton_perf.gate.strategies import judge
from pytest_triton_perf.numbers import fmt, fmt_interval, fmt_p, fmt_pct
from pytest_triton_perf.verdicts import (
    IMPROVEMENT,
    INCONCLUSIVE,
    NO_BASELINE,
    REGRESSION,
    Comparison,
    MeasurementRecord,
    SlaRecord,
    latency_histogram,
    stream_histograms,
)

#: What to do about a measurement without a baseline, by comparison mode.
MISSING_ADVICE = {
    "history": "record the baselines on this machine with --triton-perf-save and commit the "
    "directory, or point --triton-perf-baseline-dir at the directory that holds them",
    "ab": "a model new in this change has no reference: gate it against an SLA until the "
    "reference (--triton-perf-baseline-ref/-repo) has it",
}


@dataclass
class TestVerdict:
    """Everything decided about one test."""

    records: list[MeasurementRecord]
    failure: str | None


def _with_ci(v: float | None, ci: tuple[float, float] | None) -> str:
    return fmt(v) + (f" {fmt_interval(ci)}" if ci else "")


def evaluate_test(
    test: str,
    spec: sla.SlaSpec | None,
    measured: Sequence[Measured],
    ctx: GateContext,
    *,
    gate_overrides: dict[str, float | None] | None = None,
) -> TestVerdict:
    """SLA checks (on every measurement) and baseline comparisons (where a mode is set)."""
    gate = ctx.gate.with_overrides(gate_overrides or {})
    ctx = replace(ctx, gate=gate)
    results = [m.result for m in measured]
    checks = sla.evaluate(spec, results, strict=ctx.strict_sla)
    records: list[MeasurementRecord] = []
    problems: list[str] = []
    regression_lines: list[str] = []
    undecided_lines: list[str] = []
    missing_lines: list[str] = []
    missing_modes: set[str] = set()
    for index, m in enumerate(measured):
        label = sla.label(m.result)
        mine = [c for c in checks if c.measurement == label]
        comps, info = judge(m, test, label, ctx)
        if m.result.other_traffic and comps:
            busy = ", ".join(f"{name}: {n}" for name, n in m.result.other_traffic)
            comps = [
                replace(
                    c,
                    verdict=INCONCLUSIVE,
                    note=f"the server was not idle ({busy} requests of other models); "
                    f"would be {c.verdict}; {c.note}",
                )
                for c in comps
            ]
        if m.config is not None:
            info["config_hash"] = config_hash(m.config)
        sla_verdict = (
            "none"
            if spec is None and all(c.passed for c in mine)
            else ("pass" if all(c.passed for c in mine) else "FAIL")
        )
        if sla_verdict == "pass" and any(c.marginal for c in mine):
            sla_verdict = "marginal"
        record = MeasurementRecord(
            test=test,
            index=index,
            label=label,
            result=m.result.to_dict(),
            environment={
                "key": ctx.key,
                **ctx.environment,
                **({"host_load": m.host_load} if m.host_load else {}),
            },
            histogram=latency_histogram(m.result.latencies_ms),
            sla=tuple(
                SlaRecord(c.key, c.bound, c.value, c.passed, c.marginal, c.interval, c.note)
                for c in mine
            ),
            sla_verdict=sla_verdict,
            comparisons=tuple(comps),
            baseline=info,
            analysis=dict(m.analysis),
            stream_histograms=stream_histograms(m.result.stream),
        )
        records.append(record)
        regressed = [c for c in comps if c.verdict == REGRESSION]
        if regressed:
            regression_lines += _regression_screen(label, regressed, info, ctx)
        undecided = [c for c in comps if c.verdict == INCONCLUSIVE]
        if undecided and ctx.inconclusive == "fail":
            undecided_lines += _undecided_screen(label, undecided, info)
        if record.baseline.get("mode") and record.verdict.startswith(NO_BASELINE):
            missing_lines.append(_missing_line(record))
            missing_modes.add(str(record.baseline["mode"]))
    if not all(c.passed for c in checks):
        problems.append(sla.failure_text(test, checks))
    if spec is not None and spec.max_config_gap is not None:
        problems += drift_problems(test, spec.max_config_gap, measured)
    if regression_lines:
        problems.append(f"Performance regression in {test}:\n" + "\n".join(regression_lines))
    if undecided_lines:
        problems.append(
            _policy_failure(
                f"Undecided performance comparison in {test}",
                "--triton-perf-inconclusive",
                undecided_lines,
                "measure longer (A/B: --triton-perf-compare-budget-s; history: "
                "--triton-perf-compare-windows, --triton-perf-window-s) or on a quieter "
                "machine, compare in A/B mode (--triton-perf-baseline-ref), or let undecided "
                "results through with --triton-perf-inconclusive=warn",
            )
        )
    if missing_lines and ctx.no_baseline == "fail":
        problems.append(
            _policy_failure(
                f"No baseline for {test}",
                "--triton-perf-no-baseline",
                missing_lines,
                "; ".join(MISSING_ADVICE[mode] for mode in sorted(missing_modes, reverse=True))
                + "; or let measurements without a baseline through with "
                "--triton-perf-no-baseline=warn",
            )
        )
    return TestVerdict(records, "\n\n".join(problems) or None)


def drift_problems(test: str, max_gap: float, measured: Sequence[Measured]) -> list[str]:
    """The configuration drift gate (``sla(max_config_gap=0.15)``): each search of the test
    whose best configuration beats the committed one on the objective by more than
    ``max_gap`` (relative) fails it, with the better configuration as a config.pbtxt diff."""
    searches = [m.analysis["search"] for m in measured if "search" in m.analysis]
    if not searches:
        return [
            f"Configuration drift gate of {test}: the sla sets max_config_gap={max_gap:g} but "
            f"the test ran no triton_perf.search()"
        ]
    out = []
    for doc in searches:
        model, objective = doc.get("model"), doc.get("objective")
        by_name = {c["name"]: c for c in doc.get("candidates", [])}
        best, committed = (
            by_name.get(doc.get("best") or ""),
            by_name.get(doc.get("committed") or ""),
        )
        gap = doc.get("gap")
        if gap is None and best is not None and committed is not None and best is not committed:
            # The committed configuration broke the SLA (or failed) where the best holds it:
            # drift beyond any gap.
            gap = math.inf
        if gap is None:
            why = (
                f"the committed configuration was {committed['status']}: {committed['note']}"
                if committed
                else "the committed configuration was not measured"
            )
            out.append(
                f"Configuration drift gate of {test}: model '{model}': no gap on {objective} "
                f"could be computed ({why})"
            )
            continue
        if gap <= max_gap or best is None:
            continue
        values = ", ".join(f"{k}={v}" for k, v in sorted(best.get("values", {}).items()))
        lines = [
            f"Configuration drift in {test}: model '{model}': the best configuration found, "
            f"{best['name']} ({values}), "
            + (
                f"beats the committed one by {gap:+.0%} on {objective}"
                if math.isfinite(gap)
                else f"holds the SLA where the committed one is {committed and committed['status']}"
                f" ({committed and committed['note']})"
            )
            + f" (max_config_gap {max_gap:.0%})",
            f"  committed: {objective} {fmt(committed.get('objective') if committed else None)}"
            f"; best: {objective} {fmt(best.get('objective'))}",
            "  config.pbtxt diff (committed -> best):",
        ]
        lines += [f"    {line}" for line in str(best.get("config_diff", "")).splitlines()]
        out.append("\n".join(lines))
    return out


def _regression_screen(
    label: str, regressed: list[Comparison], info: dict[str, Any], ctx: GateContext
) -> list[str]:
    lines = [
        f"  {label} ({'A/B against the reference' if info.get('mode') == 'ab' else 'history'})",
        f"    {'metric':<12} {'baseline [95% CI]':>26} {'current [95% CI]':>26} "
        f"{'change':>8} {'p-value':>9}",
    ]
    for c in regressed:
        lines.append(
            f"    {c.metric:<12} {_with_ci(c.baseline, c.baseline_ci):>26} "
            f"{_with_ci(c.current, c.current_ci):>26} {fmt_pct(c.change_pct):>8} "
            f"{fmt_p(c.p_value):>9}"
        )
        if c.note:
            lines.append(f"    {'':<12} -> {c.note}")
    if info.get("file"):
        rev = info.get("revision") or {}
        file = info["file"]
        if ctx.root is not None:
            with contextlib.suppress(ValueError):
                file = str(Path(file).relative_to(ctx.root))
        lines.append(
            f"    baseline: {file} (last of {info.get('runs', '?')} run(s): "
            f"{rev.get('date') or '?'}, commit {rev.get('git_commit') or '?'}, "
            f"config {rev.get('config_hash') or '?'})"
        )
    elif info.get("mode") == "ab":
        lines.append(f"    reference: {info.get('note') or 'the reference model'}")
    return lines


def _policy_failure(heading: str, flag: str, lines: list[str], advice: str) -> str:
    """The failure of a verdict whose policy (``flag``) is ``fail``: what was found, per
    measurement, then what to do."""
    return f"{heading} ({flag}=fail):\n" + "\n".join(lines) + f"\n  -> {advice}"


def _missing_line(record: MeasurementRecord) -> str:
    """One measurement without a baseline: where it was looked for (history: the
    baseline directory and the key directory) or why the reference lacks it (A/B)."""
    mode = "A/B against the reference" if record.baseline.get("mode") == "ab" else "history"
    note = record.baseline.get("note") or next(
        (c.note for c in record.comparisons if c.verdict == NO_BASELINE and c.note), ""
    )
    return f"  {record.label} ({mode}): {record.verdict}" + (f": {note}" if note else "")


def _undecided_screen(label: str, undecided: list[Comparison], info: dict[str, Any]) -> list[str]:
    """The lines of one measurement whose metrics could not be decided: each metric with
    its change and why (too noisy, underpowered, a busy server)."""
    mode = "A/B against the reference" if info.get("mode") == "ab" else "history"
    lines = [f"  {label} ({mode})"]
    for c in undecided:
        change = f" {fmt_pct(c.change_pct)}" if c.change_pct is not None else ""
        lines.append(f"    {c.metric}{change}: inconclusive: {c.note or 'not decided'}")
    return lines


def baseline_run(record: MeasurementRecord, revision: dict[str, Any]) -> dict[str, Any]:
    """What ``--triton-perf-save`` stores for one measurement."""
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        **revision,
        "config_hash": record.baseline.get("config_hash"),
        "result": record.result,
        "histogram": record.histogram,
        **({"stream_histograms": record.stream_histograms} if record.stream_histograms else {}),
        "host_load": record.environment.get("host_load"),
        **({"extra_info": record.extra_info} if record.extra_info else {}),
    }


def summarize_improvements(records: Sequence[MeasurementRecord]) -> list[str]:
    """Lines suggesting to accept improvements as the new baseline."""
    out = []
    for r in records:
        better = [c for c in r.comparisons if c.verdict == IMPROVEMENT]
        if better:
            what = ", ".join(f"{c.metric} {fmt_pct(c.change_pct)}" for c in better)
            out.append(f"improvement: {r.test} {r.label}: {what}; accept with --triton-perf-save")
    return out


def smoke_failure(test: str, measured: Sequence[Measured]) -> str | None:
    """``--triton-perf-disable``: the one check left of each measurement is that the model
    answered, without errors. The failure text, or None when every measurement did."""
    problems = []
    for m in measured:
        r = m.result
        name = sla.label(r)
        if r.errors:
            first = f": {r.first_error}" if r.first_error else ""
            problems.append(f"  {name}: {r.errors} of {r.requests} request(s) failed{first}")
        elif r.requests + r.drained + r.ramp == 0:
            problems.append(f"  {name}: no request completed")
    if not problems:
        return None
    return (
        f"Smoke check of {test} failed (--triton-perf-disable: a few requests per "
        f"measurement, no SLA or baseline verdicts):\n" + "\n".join(problems)
    )


def extra_info_problem(test: str, extra_info: Mapping[str, Any]) -> str | None:
    """Why a test's ``triton_perf.extra_info`` cannot be stored (None when it can): every
    key a string, every value JSON-ready and finite."""
    for key, value in extra_info.items():
        if not isinstance(key, str):
            return (
                f"triton_perf.extra_info of {test}: key {key!r} is a {type(key).__name__}; "
                f"keys must be strings"
            )
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as e:
            return (
                f"triton_perf.extra_info of {test}: {key!r} = {value!r} cannot be stored as "
                f"JSON ({e}); give strings, finite numbers, booleans, None, lists or dicts"
            )
    return None
