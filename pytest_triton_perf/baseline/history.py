"""History mode over sessions: a new run against the level of the stored record, where the
unit is the *session* (one CI run, one pytest session), never the window or the run.

Runs stored in one session share that session's offset (where the scheduler put the
server, what else the machine was doing): between sessions the same configuration moves
several times more than within one. So:

- Stored runs are grouped by their ``session`` (:func:`sessions`); a session's level of a
  metric is the median over its runs of each run's median window (:func:`session_levels`).
- The reference is the level since the last change point of the record
  (:func:`~pytest_triton_perf.baseline.changepoints.e_divisive`) or since the last change
  accepted with ``triton-perf history accept`` (:func:`reference_start`), whichever is later.
- A new session is compared with a one-sided Student-t **prediction interval** for a new
  session's log level (:func:`compare_sessions`): mean and spread of the reference sessions'
  log levels, scale ``sd * sqrt(1 + 1/k)``. The spread is the test's own with three or more
  sessions (``k - 1`` degrees of freedom); with fewer it is the machine's: the
  session-to-session variance pooled over every test stored under the same hardware key
  (:func:`machine_spread`); with none, :data:`ASSUMED_SESSION_SD`, said in the note.
- A regression is significant at alpha *and* at least the minimum effect *and* above the
  floor; a pass is non-inferiority (the one-sided bound toward worse inside the smallest
  change that counts); every comparison states the smallest change it could see.
- A shift seen once is *suspected*, not decided (:class:`Suspicions`): it is confirmed only
  by a later session that sees it too, and cleared by one that does not.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from pytest_triton_perf.baseline.changepoints import e_divisive
from pytest_triton_perf.baseline.compare import (
    HIGHER_IS_WORSE,
    GateSettings,
    compare_results,
    noise,
    smallest_change,
    window_values,
)
from pytest_triton_perf.baseline.power import pct
from pytest_triton_perf.baseline.sequential import POWER
from pytest_triton_perf.baseline.store import same_commit
from pytest_triton_perf.files import atomic_write_text
from pytest_triton_perf.measure.stats import median_ci
from pytest_triton_perf.verdicts import (
    IMPROVEMENT,
    INCONCLUSIVE,
    NO_BASELINE,
    PASS,
    REGRESSION,
    Comparison,
)

#: Fewest sessions whose own spread a comparison uses; below, the machine's.
MIN_SESSIONS = 3
#: Session-to-session standard deviation (of the log level) assumed where neither the test
#: nor any other test of the machine has sessions enough to estimate it: above the 3.2%
#: measured between sessions on a CPU-bound model, so that it errs toward "inconclusive".
ASSUMED_SESSION_SD = 0.05
#: Where suspected shifts wait for a second session: beside the baselines of the key.
SUSPECTED_FILE = "suspected.json"


@dataclass(frozen=True)
class Session:
    """The stored runs of one session, in the order they were stored."""

    id: str
    commit: str | None
    date: str
    results: tuple[Mapping[str, Any], ...]


def sessions(runs: Sequence[Mapping[str, Any]]) -> list[Session]:
    """Stored runs (``{"date", "git_commit", "session", "result", ...}``) grouped by session,
    oldest first. A run stored before sessions were recorded is a session of its own."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for i, run in enumerate(runs):
        sid = str(run.get("session") or f"run-{run.get('date') or i}-{i}")
        groups.setdefault(sid, []).append(run)
    out = [
        Session(
            id=sid,
            commit=group[-1].get("git_commit"),
            date=str(group[0].get("date") or ""),
            results=tuple(r.get("result") or {} for r in group),
        )
        for sid, group in groups.items()
    ]
    return sorted(out, key=lambda s: s.date)


def run_level(result: Mapping[str, Any], metric: str) -> float | None:
    """One run's level of ``metric``: the median of its windows (None when it has none or
    when it is not positive, which no log level can be)."""
    values = window_values(result, metric)
    if not values:
        return None
    level = float(np.median(values))
    return level if level > 0 else None


def session_levels(ss: Sequence[Session], metric: str) -> list[float | None]:
    """Each session's level of ``metric``: the median of its runs' levels."""
    out: list[float | None] = []
    for s in ss:
        levels = [v for r in s.results if (v := run_level(r, metric)) is not None]
        out.append(float(np.median(levels)) if levels else None)
    return out


@dataclass(frozen=True)
class Spread:
    """A session-to-session standard deviation of log levels, its degrees of freedom and
    where it comes from (for the note)."""

    sd: float
    df: float
    source: str


def own_spread(logs: Sequence[float]) -> Spread | None:
    """The spread of a test's own reference sessions (three or more)."""
    if len(logs) < MIN_SESSIONS:
        return None
    sd = float(np.std(logs, ddof=1))
    return Spread(sd, len(logs) - 1, f"{len(logs)} sessions, session-to-session sd {pct(sd)}")


def _within_segments(levels: Sequence[float]) -> tuple[float, int]:
    """Sum of squared deviations of log levels from their segment means (segments between
    change points) and its degrees of freedom."""
    x = np.log(np.asarray(levels, dtype=float))
    cuts = [0, *(c.index for c in e_divisive(levels)), x.size]
    ss, df = 0.0, 0
    for lo, hi in itertools.pairwise(cuts):
        seg = x[lo:hi]
        ss += float(((seg - seg.mean()) ** 2).sum())
        df += seg.size - 1
    return ss, df


def machine_spread(documents: Iterable[Mapping[str, Any]], metric: str) -> Spread | None:
    """The session-to-session variance of ``metric`` pooled over every stored measurement
    of one hardware key (each within the segments between its change points), weighted by
    degrees of freedom; None with fewer than two degrees of freedom in all."""
    total, df, tests = 0.0, 0, 0
    for doc in documents:
        levels = [v for v in session_levels(sessions(doc.get("runs") or []), metric) if v]
        if len(levels) < 2:
            continue
        ss, d = _within_segments(levels)
        if d > 0:
            total, df, tests = total + ss, df + d, tests + 1
    if df < 2:
        return None
    sd = math.sqrt(total / df)
    return Spread(
        sd, df, f"the machine's session-to-session sd {pct(sd)} ({tests} test(s), {df} df)"
    )


def reference_start(
    ss: Sequence[Session], levels: Sequence[float | None], accepted: Sequence[str]
) -> tuple[int, str]:
    """Index of the first reference session and why: after the last change point of the
    record, or at the last accepted commit (``triton-perf history accept``)."""
    start, why = 0, ""
    known = [i for i, v in enumerate(levels) if v is not None]
    if len(known) >= 4:
        cps = e_divisive([v for v in levels if v is not None])
        if cps:
            cp = cps[-1]
            start = known[cp.index]
            why = (
                f"the level since the change point at commit {_short(ss[start].commit)} "
                f"({cp.change_pct:+.1f}%)"
            )
    for commit in accepted:
        at = next((i for i, s in enumerate(ss) if same_commit(s.commit, commit)), None)
        if at is not None and at >= start:
            start, why = at, f"the level since commit {_short(commit)}, accepted"
    return start, why


def _short(commit: str | None) -> str:
    return (commit or "?")[:10]


def compare_sessions(
    metric: str,
    ss: Sequence[Session],
    current: Mapping[str, Any],
    gate: GateSettings,
    *,
    machine: Callable[[], Spread | None] | None = None,
    accepted: Sequence[str] = (),
) -> Comparison:
    """One metric of the current run against the reference sessions (module docstring);
    ``machine()`` gives the machine's spread, asked only where the reference has fewer than
    :data:`MIN_SESSIONS` sessions."""
    from scipy import stats

    mode = "history"
    levels = session_levels(ss, metric)
    start, why = reference_start(ss, levels, accepted)
    ref = [v for v in levels[start:] if v is not None]
    if not ref:
        return Comparison(metric, NO_BASELINE, mode, note="no stored session has this figure")
    windows = window_values(current, metric)
    cur = run_level(current, metric)
    if cur is None:
        return Comparison(metric, INCONCLUSIVE, mode, note="this run has no window of the figure")
    logs = [math.log(v) for v in ref]
    k = len(logs)
    spread = (
        own_spread(logs)
        or (machine() if machine else None)
        or Spread(
            ASSUMED_SESSION_SD,
            math.inf,
            f"assumed session-to-session sd {pct(ASSUMED_SESSION_SD)}: fewer than "
            f"{MIN_SESSIONS} sessions stored and none of this machine's tests has two",
        )
    )
    mean = float(np.mean(logs))
    base = math.exp(mean)
    worse_up = HIGHER_IS_WORSE[metric]
    diff = math.log(cur) - mean
    worse = diff if worse_up else -diff
    scale = spread.sd * math.sqrt(1 + 1 / k)
    t = stats.t(spread.df) if math.isfinite(spread.df) else stats.norm()
    q = float(t.ppf(1 - gate.pass_alpha))  # the pass bound's quantile
    if scale > 0:
        p_worse, p_better = float(t.sf(worse / scale)), float(t.sf(-worse / scale))
    else:
        p_worse = p_better = 1.0 if worse == 0 else (0.0 if worse > 0 else 1.0)
    bound = math.expm1(worse + q * scale)
    mde = math.expm1((float(t.ppf(1 - gate.alpha)) + float(t.ppf(POWER))) * scale)
    target = smallest_change(gate, metric, base)
    effect = gate.min_effect.get(metric, 0.0)
    floor = gate.floor.get(metric, 0.0)
    big_enough = abs(cur - base) >= floor
    where = f"{why}; " if why else ""
    how = (
        f"prediction interval over {k} session(s) ({where}{spread.source}); could see >= {pct(mde)}"
    )
    if noise(windows) > gate.max_noise:
        verdict, p = INCONCLUSIVE, min(p_worse, p_better)
        how = (
            f"windows too noisy to decide: {noise(windows):.0%} window-to-window variation "
            f"(limit {gate.max_noise:.0%}); {how}"
        )
    elif p_worse < gate.alpha and math.expm1(worse) >= effect and big_enough:
        verdict, p = REGRESSION, p_worse
    elif p_better < gate.alpha and -math.expm1(worse) >= effect and big_enough:
        verdict, p = IMPROVEMENT, p_better
    elif bound < target:
        verdict, p = PASS, min(p_worse, p_better)
    else:
        verdict, p = INCONCLUSIVE, min(p_worse, p_better)
        how = (
            f"the change may be as bad as {pct(bound)} (one-sided {1 - gate.pass_alpha:.0%} "
            f"bound; the smallest change that counts: {pct(target)}); {how}"
        )
    return Comparison(
        metric=metric,
        verdict=verdict,
        mode=mode,
        baseline=base,
        baseline_ci=_interval(logs),
        current=cur,
        current_ci=median_ci(windows),
        change_pct=100.0 * math.expm1(diff),
        p_value=p,
        note=how,
        mde_pct=100.0 * mde,
        change_ci=(
            100.0 * math.expm1(diff - float(t.ppf(0.975)) * scale),
            100.0 * math.expm1(diff + float(t.ppf(0.975)) * scale),
        ),
    )


def _interval(logs: Sequence[float]) -> tuple[float, float] | None:
    """95% t interval of the reference level (geometric mean of the sessions)."""
    from scipy import stats

    if len(logs) < 2:
        return None
    m, se = float(np.mean(logs)), float(np.std(logs, ddof=1)) / math.sqrt(len(logs))
    half = float(stats.t.ppf(0.975, len(logs) - 1)) * se
    return math.exp(m - half), math.exp(m + half)


# -- suspected shifts: confirmed by another session, or cleared -----------------------------


@dataclass(frozen=True)
class Suspicions:
    """Shifts seen by one session, waiting for the next: ``suspected.json`` in the key
    directory, ``{measurement file: {metric: {verdict, change_pct, session, commit, date}}}``,
    rewritten atomically under the store's lock (``lock``, a context manager factory)."""

    path: Path
    lock: Callable[[], contextlib.AbstractContextManager[None]]

    def _read(self) -> dict[str, Any]:
        if not self.path.exists():
            return {}
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}  # a damaged record of suspicions loses nothing that matters
        return doc if isinstance(doc, dict) else {}

    def settle(
        self, measurement: str, comps: Sequence[Comparison], session: str, commit: str | None
    ) -> list[Comparison]:
        """The comparisons with every shift confirmed (seen by another session too),
        suspected (seen by this one only: inconclusive) or a cleared suspicion noted."""
        now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        with self.lock():
            doc = self._read()
            mine = dict(doc.get(measurement) or {})
            out = []
            for c in comps:
                prior = mine.get(c.metric)
                seen = prior if isinstance(prior, dict) else None
                if c.verdict in (REGRESSION, IMPROVEMENT):
                    if seen and seen.get("verdict") == c.verdict and seen.get("session") != session:
                        c = replace(
                            c,
                            note=f"{c.note}; confirmed: also seen in an earlier session "
                            f"({seen.get('date')}, commit {_short(seen.get('commit'))}: "
                            f"{seen.get('change_pct', 0):+.1f}%)",
                        )
                    else:
                        if not seen or seen.get("verdict") != c.verdict:
                            mine[c.metric] = {
                                "verdict": c.verdict,
                                "change_pct": round(c.change_pct or 0.0, 2),
                                "session": session,
                                "commit": commit,
                                "date": now,
                            }
                        c = replace(
                            c,
                            verdict=INCONCLUSIVE,
                            note=f"suspected {c.verdict} ({c.change_pct or 0:+.1f}%), not yet "
                            f"confirmed: seen in this session only; the next session confirms "
                            f"or clears it; {c.note}",
                        )
                elif seen and seen.get("session") != session:
                    del mine[c.metric]
                    c = replace(
                        c,
                        note=f"{c.note}; the {seen.get('verdict')} suspected on "
                        f"{seen.get('date')} (commit {_short(seen.get('commit'))}) was not "
                        f"seen again: cleared",
                    )
                out.append(c)
            if mine:
                doc[measurement] = mine
            else:
                doc.pop(measurement, None)
            if doc or self.path.exists():
                try:
                    text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
                    atomic_write_text(self.path, text)
                except OSError as e:  # a read-only checkout: say so, decide as before
                    why = f"; could not record it in {self.path}: {e.strerror or e}"
                    out = [
                        replace(c, note=c.note + why) if "suspected" in c.note else c for c in out
                    ]
        return out


def compare_history(
    runs: Sequence[Mapping[str, Any]],
    current: Mapping[str, Any],
    gate: GateSettings,
    *,
    machine: Callable[[str], Spread | None] = lambda metric: None,
    accepted: Sequence[str] = (),
) -> list[Comparison]:
    """Every gated metric of ``current`` (``PerfResult.to_dict()``) against the stored runs
    (store format, with their sessions): the metrics of windows by :func:`compare_sessions`
    (``machine(metric)`` asked only where the test has too few sessions of its own), the
    error rate on the reference sessions' pooled counts."""
    ss = sessions(runs)

    def judge(metric: str) -> Comparison:
        return compare_sessions(
            metric, ss, current, gate, machine=lambda: machine(metric), accepted=accepted
        )

    results = [r.get("result") or {} for r in runs]
    return compare_results(results, current, gate, mode="history", judge=judge)
