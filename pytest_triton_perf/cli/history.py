"""``triton-perf history``: the stored record as series, its change points and its creep;
``triton-perf history accept TEST --at COMMIT``: a change accepted on purpose.

For every stored measurement and gated metric, the series is the sessions' levels in the
order they were stored (:mod:`pytest_triton_perf.baseline.history`), the change points are
E-Divisive means' (:mod:`pytest_triton_perf.baseline.changepoints`), and the creep is the
drift of the newest session against a reference point (``--since``: N sessions back, a date
or a commit). A change point is a *regression* when it goes the metric's worse way by at
least its minimum effect (the gate's, ``--min-effect`` to override).
"""

from __future__ import annotations

import argparse
import datetime as dt
import fnmatch
import itertools
import json
import math
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from pytest_triton_perf import metrics
from pytest_triton_perf.baseline.store import same_commit
from pytest_triton_perf.cli.common import DEFAULT_DIR, EXIT_OK, EXIT_REGRESSION, add_command
from pytest_triton_perf.errors import BaselineError, CliError, ConfigError

#: Sessions back of the default reference point of the creep.
DEFAULT_SINCE = 10
#: Metrics of windows the record holds, in report order (the error rate is a count).
SERIES_METRICS = tuple(m.name for m in metrics.GATED if m.per_window and m.counts is None)

EXIT_STATUSES = (
    (EXIT_OK, "no regression change point among the newest N sessions (or no --fail-on-new)"),
    (EXIT_REGRESSION, "--fail-on-new N: a regression change point among the newest N"),
)


@dataclass
class Series:
    """One metric of one stored measurement, analysed."""

    test: str
    label: str
    file: str
    metric: str
    points: list[dict[str, Any]]  # {"session", "commit", "date", "level"}
    change_points: list[dict[str, Any]] = field(default_factory=list)
    creep: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "test": self.test,
            "label": self.label,
            "file": self.file,
            "metric": self.metric,
            "unit": metrics.BY_NAME[self.metric].unit,
            "points": self.points,
            "change_points": self.change_points,
            "creep": self.creep,
        }


def _kind(metric: str, change_pct: float, effect: float) -> str:
    """``regression``, ``improvement`` or ``shift`` (significant but below the effect)."""
    worse = change_pct > 0 if metrics.BY_NAME[metric].higher_is_worse else change_pct < 0
    if abs(change_pct) < 100 * effect:
        return "shift"
    return "regression" if worse else "improvement"


def _creep_start(points: Sequence[Mapping[str, Any]], since: str | None) -> int:
    """Index of the reference point of the creep."""
    n = len(points)
    if since is None:
        return max(0, n - 1 - DEFAULT_SINCE)
    if since.isdigit():
        return max(0, n - 1 - int(since))
    try:
        day = dt.date.fromisoformat(since)
    except ValueError:
        day = None
    if day is not None:
        for i, p in enumerate(points):
            if str(p.get("date") or "")[:10] >= day.isoformat():
                return i
        return n - 1
    commit = _resolve(since)
    for i, p in enumerate(points):
        if same_commit(p.get("commit"), commit):
            return i
    shown = ", ".join(dict.fromkeys(str(p.get("commit") or "?")[:10] for p in points))
    raise CliError(
        f"--since={since}: not a number of sessions, a date (YYYY-MM-DD) or a stored commit "
        f"(stored, oldest first: {shown})"
    )


def _resolve(ref: str) -> str:
    """A tag or branch as its commit (``git rev-parse`` here); the text itself otherwise."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ref
    return done.stdout.strip() or ref


def analyse(
    doc: Mapping[str, Any],
    file: str,
    *,
    alpha: float,
    effects: Mapping[str, float],
    since: str | None,
    wanted: Sequence[str] = SERIES_METRICS,
) -> list[Series]:
    """Every wanted metric of one baseline file as an analysed series (two sessions at
    least)."""
    from pytest_triton_perf.baseline import history
    from pytest_triton_perf.baseline.changepoints import creep, e_divisive

    ss = history.sessions(doc.get("runs") or [])
    out = []
    for metric in wanted:
        levels = history.session_levels(ss, metric)
        points = [
            {"session": s.id, "commit": s.commit, "date": s.date, "level": v}
            for s, v in zip(ss, levels, strict=True)
            if v is not None
        ]
        if len(points) < 2:
            continue
        series = Series(str(doc.get("test")), str(doc.get("label")), file, metric, points)
        values = [v for v in levels if v is not None]
        for cp in e_divisive(values, alpha=alpha):
            at = points[cp.index]
            row = cp.to_dict()
            row.update(
                commit=at["commit"],
                date=at["date"],
                session=at["session"],
                kind=_kind(metric, cp.change_pct, effects.get(metric, 0.0)),
            )
            series.change_points.append(row)
        start = _creep_start(points, since)
        drift = creep(values[start:])
        if drift is not None:
            row = drift.to_dict()
            lower, upper = drift.ci_pct
            significant = lower > 0 or upper < 0
            row.update(
                since_commit=points[start]["commit"],
                since_date=points[start]["date"],
                kind=_kind(metric, drift.change_pct, effects.get(metric, 0.0))
                if significant
                else "none",
            )
            series.creep = row
        out.append(series)
    return out


def _fmt_pct(v: float) -> str:
    return f"{v:+.1f}%"


def _cp_text(cp: Mapping[str, Any], unit: str) -> str:
    lo, hi = cp["ci_pct"]
    return (
        f"{cp['kind']} at {str(cp.get('commit') or '?')[:10]} ({str(cp.get('date'))[:10]}): "
        f"{cp['before']:.4g} -> {cp['after']:.4g} {unit} {_fmt_pct(cp['change_pct'])} "
        f"[{_fmt_pct(lo)}, {_fmt_pct(hi)}], p={cp['p_value']:.3f}"
    )


def _creep_text(c: Mapping[str, Any] | None) -> str:
    if not c:
        return "-"
    lo, hi = c["ci_pct"]
    label = c["kind"] if c["kind"] != "none" else "no drift"
    return (
        f"{label}: {_fmt_pct(c['change_pct'])} [{_fmt_pct(lo)}, {_fmt_pct(hi)}] over "
        f"{c['span']} session(s) since {str(c.get('since_commit') or '?')[:10]}"
    )


def _terminal(all_series: Sequence[Series], out: TextIO) -> None:
    from pytest_triton_perf.report.text import align

    rows = [["test", "measurement", "metric", "sessions", "change points", "creep"]]
    for s in all_series:
        unit = metrics.BY_NAME[s.metric].unit
        cps = "; ".join(_cp_text(cp, unit) for cp in s.change_points) or "none"
        rows.append([s.test, s.label, s.metric, str(len(s.points)), cps, _creep_text(s.creep)])
    for line in align(rows, numeric=[3]):
        out.write(line + "\n")


def markdown(all_series: Sequence[Series]) -> str:
    """The analysis as a Markdown table (a GitHub step summary)."""
    lines = [
        "## Performance history",
        "",
        "| test | measurement | metric | sessions | change points | creep |",
        "|---|---|---|---:|---|---|",
    ]
    for s in all_series:
        unit = metrics.BY_NAME[s.metric].unit
        cps = "<br>".join(_cp_text(cp, unit) for cp in s.change_points) or "none"
        cells = [s.test, s.label, s.metric, str(len(s.points)), cps, _creep_text(s.creep)]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def plot(series: Series, directory: Path) -> Path:
    """A PNG of the series, its segments' levels and its change points marked."""
    from pytest_triton_perf.report.plots.canvas import (
        BASELINE_COLOR,
        BREACH_COLOR,
        new_figure,
        safe_name,
    )

    fig = new_figure(7, 3)
    ax = fig.add_subplot()
    values = [float(p["level"]) for p in series.points]
    xs = list(range(len(values)))
    ax.plot(xs, values, "o-", color=BASELINE_COLOR, lw=1, ms=4, label="session level")
    cuts = [0, *(int(cp["index"]) for cp in series.change_points), len(values)]
    for cp in series.change_points:
        color = BREACH_COLOR if cp["kind"] == "regression" else "#555555"
        ax.axvline(int(cp["index"]) - 0.5, color=color, ls="--", lw=1)
        ax.annotate(
            f"{_fmt_pct(cp['change_pct'])} {str(cp.get('commit') or '')[:7]}",
            (int(cp["index"]) - 0.5, max(values)),
            fontsize=7,
            rotation=90,
            va="top",
            ha="right",
        )
    for lo, hi in itertools.pairwise(cuts):
        seg = values[lo:hi]
        if seg:
            level = math.exp(sum(math.log(v) for v in seg) / len(seg))
            ax.hlines(level, lo - 0.3, hi - 0.7, color="#999999", lw=2)
    meta = metrics.BY_NAME[series.metric]
    ax.set_xlabel("session (oldest first)")
    ax.set_ylabel(f"{meta.short} ({meta.unit})" if meta.unit else meta.short)
    ax.set_title(f"{series.test} {series.label}", fontsize=8)
    directory.mkdir(parents=True, exist_ok=True)
    name = safe_name(f"{series.test}__{series.label}__{series.metric}", 150)
    path = directory / f"{name}.png"
    fig.savefig(path)
    return path


def _documents(root: Path, patterns: Sequence[str]) -> list[tuple[Path, dict[str, Any]]]:
    from pytest_triton_perf.baseline.store import BaselineStore

    store = BaselineStore(root)
    if not root.is_dir():
        raise CliError(f"--baselines {root}: no such directory")
    docs = []
    try:
        for path in store.iter_files():
            doc = store.read_file(path)
            test = str(doc.get("test"))
            if patterns and not any(
                p == test or fnmatch.fnmatchcase(test, p) or p in test for p in patterns
            ):
                continue
            docs.append((path, doc))
    except BaselineError as e:
        raise CliError(str(e)) from None
    return docs


def cmd_history(args: argparse.Namespace, out: TextIO) -> int:
    """Analyse the record; exit 1 on a new regression change point with --fail-on-new."""
    from pytest_triton_perf.baseline.compare import DEFAULT_MIN_EFFECT
    from pytest_triton_perf.options.parsers import parse_metric_map

    root = Path(args.baselines)
    effects = dict(DEFAULT_MIN_EFFECT)
    if args.min_effect:
        try:
            parsed = parse_metric_map(args.min_effect, where="--min-effect")
        except ConfigError as e:
            raise CliError(str(e)) from None
        effects.update({k: v for k, v in parsed.items() if v is not None})
    if not 0 < args.alpha < 1:
        raise CliError(f"--alpha={args.alpha}: a number between 0 and 1 is accepted")
    if args.fail_on_new is not None and args.fail_on_new < 1:
        raise CliError(f"--fail-on-new={args.fail_on_new}: a number of sessions >= 1")
    wanted = tuple(args.metric) if args.metric else SERIES_METRICS
    unknown = [m for m in wanted if m not in SERIES_METRICS]
    if unknown:
        raise CliError(f"--metric {', '.join(unknown)}: accepted are {', '.join(SERIES_METRICS)}")
    docs = _documents(root, args.tests)
    if not docs:
        what = f" matching {', '.join(args.tests)}" if args.tests else ""
        raise CliError(f"no baseline file{what} under {root}")
    all_series: list[Series] = []
    for path, doc in docs:
        all_series += analyse(
            doc,
            str(path),
            alpha=args.alpha,
            effects=effects,
            since=args.since,
            wanted=wanted,
        )
    _terminal(all_series, out)
    new: list[str] = []
    if args.fail_on_new is not None:
        for s in all_series:
            for cp in s.change_points:
                if cp["kind"] == "regression" and cp["index"] >= len(s.points) - args.fail_on_new:
                    new.append(f"{s.test} {s.label} {s.metric}: {_cp_text(cp, '')}")
    if args.json:
        payload = {"series": [s.to_dict() for s in all_series], "new_regressions": new}
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    text = markdown(all_series)
    if args.markdown:
        Path(args.markdown).write_text(text, encoding="utf-8")
    if args.step_summary and os.environ.get("GITHUB_STEP_SUMMARY"):
        with open(os.environ["GITHUB_STEP_SUMMARY"], "a", encoding="utf-8") as f:
            f.write(text)
    if args.plots:
        for s in all_series:
            plot(s, Path(args.plots))
    if new:
        out.write(
            f"{len(new)} regression change point(s) among the newest {args.fail_on_new} "
            f"session(s):\n" + "".join(f"  {line}\n" for line in new)
        )
        return EXIT_REGRESSION
    return EXIT_OK


def cmd_accept(args: argparse.Namespace, out: TextIO) -> int:
    """Record an accepted change in every baseline file of the test."""
    from pytest_triton_perf.baseline.store import BaselineStore

    root = Path(args.baselines)
    store = BaselineStore(root)
    stored_docs = _documents(root, [])
    docs = [(p, d) for p, d in stored_docs if str(d.get("test")) == args.test]
    if not docs:
        stored = sorted({str(d.get("test")) for _, d in stored_docs})
        raise CliError(
            f"no baseline of test {args.test!r} under {root}; stored tests: "
            f"{', '.join(stored) or 'none'}"
        )
    try:
        for path, _ in docs:
            entry = store.accept(path, args.at, note=args.note or "")
            out.write(f"accepted {str(entry['commit'])[:10]} in {path}\n")
    except BaselineError as e:
        raise CliError(str(e)) from None
    return EXIT_OK


def add_parser(sub: Any) -> None:
    """``history`` and ``history accept``."""
    p = add_command(
        sub,
        "history",
        exits=EXIT_STATUSES,
        help="change points and creep over the stored record (reads files only)",
        description="For every stored measurement and gated metric: the sessions' levels "
        "in stored order, the change points (E-Divisive means, permutation test), each "
        "with its commit, levels before and after, change with a 95%% interval and "
        "p-value, and the creep of the newest session since a reference point. "
        "'triton-perf history accept TEST --at COMMIT' records a change accepted on "
        "purpose: history mode compares later runs with the level from that commit on.",
    )
    p.add_argument("tests", nargs="*", metavar="TEST", help="test ids or globs (default: all)")
    p.add_argument("--baselines", default=DEFAULT_DIR, metavar="DIR", help="default: %(default)s")
    p.add_argument(
        "--fail-on-new",
        type=int,
        metavar="N",
        help="exit 1 when a regression change point is among the newest N sessions",
    )
    p.add_argument(
        "--since",
        metavar="REF",
        help=f"reference point of the creep: N sessions back, a date (YYYY-MM-DD), a commit "
        f"or tag (default: {DEFAULT_SINCE} sessions back)",
    )
    p.add_argument("--metric", action="append", metavar="METRIC", help="only these metrics")
    p.add_argument(
        "--alpha", type=float, default=0.05, help="change point significance (default 0.05)"
    )
    p.add_argument(
        "--min-effect",
        action="append",
        metavar="METRIC=FRACTION",
        help="the smallest change a regression is (default: the gate's)",
    )
    p.add_argument("--json", metavar="PATH", help="write the analysis as JSON")
    p.add_argument("--markdown", metavar="PATH", help="write the analysis as Markdown")
    p.add_argument(
        "--step-summary", action="store_true", help="append the Markdown to $GITHUB_STEP_SUMMARY"
    )
    p.add_argument("--plots", metavar="DIR", help="a PNG per series, change points marked")
    p.set_defaults(func=cmd_history)


def add_accept_parser(sub: Any) -> None:
    """``history accept`` (dispatched by :func:`main_argv`)."""
    p = add_command(
        sub,
        "accept",
        exits=[(EXIT_OK, "the accepted change is recorded")],
        help="accept a change on purpose",
        description="Record in the test's baseline files that the change at COMMIT is "
        "accepted: history mode compares later runs with the level from COMMIT on. A "
        "commit that no stored run has is an error listing the stored ones.",
    )
    p.add_argument("test", metavar="TEST", help="the test id as stored")
    p.add_argument("--at", required=True, metavar="COMMIT", help="a stored run's commit")
    p.add_argument("--baselines", default=DEFAULT_DIR, metavar="DIR", help="default: %(default)s")
    p.add_argument("--note", metavar="TEXT", help="why, kept with the record")
    p.set_defaults(func=cmd_accept)
