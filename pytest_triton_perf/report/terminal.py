"""The terminal summary: one row per measurement, then the lines that ask for action.

Verbosity (pytest's ``-q`` / ``-v`` count):

- ``-qq`` and quieter: only the count line;
- ``-q``: only the rows that need attention (SLA breached or marginal, regression,
  improvement, inconclusive), the warning about measurements without a baseline (under
  ``--triton-perf-no-baseline=warn``), then the count line. The test column stays: a
  failing row without its test id would send the reader hunting;
- default: every row (test, model, workload, p50, p99, throughput, errors, SLA, baseline
  verdict with the change of its most significant metric), then the hint lines
  (improvement, inconclusive, no baseline: where it was looked for and, when no measurement
  found one, which key directories the baseline directory holds) and the count line;
- ``-v``: GPU and CPU memory columns, a detail line per regression and improvement
  (baseline and current values with intervals, p-value, the smallest change the comparison
  could see, baseline file and revision) and per measurement with passing metrics (what
  they would have flagged: ``pass: ... would have flagged >= 3.8% on p50``), with the
  machine's load during the measurement (``load 3.2, steal 0%``).

A streaming (decoupled) model adds a line with its per-response figures (``streaming: llm
conc=4 batch=1 grpc: TTFT p50 41.3 ms, p99 42.1 ms; ITL p50 10.0 ms, ...``), at default
verbosity and above.

A capacity search adds its headline (``capacity: 812.3 infer/s at concurrency 8 (limited by
p99_ms <= 30, broken at concurrency 9; knee at concurrency 8)``), preceded at ``-v`` by its
step table; a configuration search adds its ranked candidate table, the best configuration
and its lead over the committed one, the time spent and the candidates pruned, and at ``-v``
the best configuration's config.pbtxt diff. A measurement of a sequence model adds a line
with its sequences, their latency, the model's sequence slots and the server's queue time,
and the notes about its sequences (e.g. the default length it was driven with). At ``-v``, a
measurement of an ensemble or a BLS model adds its per-step table (requests, server queue
and compute per request of the step, and each step's share of one pipeline request). Models
measured together (``measure_together``) add their group's table: each model's figures
together and, with the interference rounds, alone against together with the change and its
95% interval (the design at ``-v``). A memory footprint adds its headline (host and GPU
deltas, or why one is unavailable), at ``-v`` with each stage's memory, the sources and the
placement snippet. Measurements on a KServe V2 server other than Triton (MLServer through
``--triton-url``) add a note naming the figures unavailable there. At ``-q`` and quieter none
of these is shown.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pytest_triton_perf import metrics
from pytest_triton_perf.footprint import placement_lines
from pytest_triton_perf.measure.summary import KSERVE_FIGURES, KSERVE_NOTE
from pytest_triton_perf.report.analysis import (
    best_diff,
    capacity_effort,
    capacity_headline,
    capacity_notes,
    capacity_of,
    capacity_table,
    capacity_title,
    footprint_headline,
    footprint_of,
    footprint_sources,
    footprint_table,
    group_lines,
    group_of,
    group_table,
    group_title,
    search_lines,
    search_of,
    search_table,
    search_title,
)
from pytest_triton_perf.report.streaming import stream_lines
from pytest_triton_perf.report.text import (
    PIPELINE_HEADER,
    SHORT_METRIC,
    align,
    comparison_reason,
    could_see,
    counts_text,
    extra_infos,
    extra_text,
    fmt,
    fmt_mb,
    fmt_pct,
    headline,
    host_load,
    missing_baseline,
    model_name,
    needs_attention,
    num,
    pipeline_of,
    pipeline_rows,
    pipeline_title,
    verdict_cell,
    was_compared,
    with_unit,
    workload_text,
)
from pytest_triton_perf.verdicts import (
    IMPROVEMENT,
    INCONCLUSIVE,
    NO_BASELINE,
    PASS,
    REGRESSION,
    MeasurementRecord,
)


@dataclass(frozen=True)
class Column:
    """One column of the table: its header, its cell, and the value rows sort by."""

    header: str
    cell: Callable[[MeasurementRecord], str]
    key: Callable[[MeasurementRecord], float | str | None]
    numeric: bool = True  # right-aligned


def _figure(name: str, header: str | None = None, digits: int | None = None) -> Column:
    """A column of a catalogue figure (``p99_ms``), headed ``p99 ms`` unless told."""
    metric = metrics.BY_NAME[name]

    def value(r: MeasurementRecord) -> float | None:
        return num(metric.read(r.result))

    def cell(r: MeasurementRecord) -> str:
        v = value(r)
        return fmt_mb(v) if metric.unit == "MB" else fmt(v, digits) if digits else fmt(v)

    return Column(header or f"{metric.short} {metric.unit}", cell, value)


def _field(*path: str) -> Callable[[MeasurementRecord], float | None]:
    """The number at ``path`` in a record's result (None when absent)."""

    def value(r: MeasurementRecord) -> float | None:
        v: object = r.result
        for part in path:
            v = v.get(part) if isinstance(v, dict) else None
        return num(v)

    return value


def _text(header: str, cell: Callable[[MeasurementRecord], str]) -> Column:
    return Column(header, cell, cell, numeric=False)


def _number(header: str, value: Callable[[MeasurementRecord], float | None]) -> Column:
    return Column(header, lambda r: fmt(value(r)), value)


def _whole(header: str, value: Callable[[MeasurementRecord], float | None]) -> Column:
    return Column(header, lambda r: "-" if value(r) is None else f"{value(r):.0f}", value)


#: Every column ``--triton-perf-columns`` and ``--triton-perf-sort`` name (the names are
#: the option parser's, ``options.parsers.COLUMNS``).
COLUMNS: dict[str, Column] = {
    "test": _text("test", lambda r: r.test),
    "model": _text("model", model_name),
    "workload": _text("workload", workload_text),
    **{q: _figure(f"{q}_ms") for q in ("p50", "p90", "p95", "p99", "avg")},
    "throughput": _figure("throughput", "infer/s", 1),
    "capacity": _figure("capacity", "capacity", 1),
    "requests": _whole("requests", _field("requests")),
    "errors": _whole("errors", _field("errors")),
    "error_rate": Column(
        "error rate",
        lambda r: with_unit(_field("error_rate")(r), "error_rate"),
        _field("error_rate"),
    ),
    "gpu_memory": _figure("gpu_memory_mb", "GPU MB"),
    "cpu_memory": _figure("cpu_memory_mb", "CPU MB"),
    "energy": _number("GPU J", _field("energy_j")),
    "tokens_per_joule": _figure("tokens_per_joule", "tokens/J"),
    "queue": _number("queue ms", _field("server", "queue_ms")),
    "compute": _number("compute ms", _field("server", "compute_infer_ms")),
    "sla": _text("SLA", lambda r: r.sla_verdict),
    "baseline": _text("baseline", verdict_cell),
    "extra": _text("extra_info", lambda r: extra_text(r.extra_info) or "-"),
}
#: The table without ``--triton-perf-columns``; ``-v`` adds the memory columns before errors.
DEFAULT_COLUMNS = (
    "test",
    "model",
    "workload",
    "p50",
    "p99",
    "throughput",
    "errors",
    "sla",
    "baseline",
)
MEMORY_COLUMNS = ("gpu_memory", "cpu_memory")
#: ``-v`` adds these after the memory columns where some record has GPU energy.
ENERGY_COLUMNS = ("energy", "tokens_per_joule")


def _columns(
    columns: Sequence[str] | None, verbose: bool, records: Sequence[MeasurementRecord] = ()
) -> list[str]:
    if columns:
        return list(columns)
    names = list(DEFAULT_COLUMNS)
    if verbose:
        at = names.index("errors")
        energy = any(_field("energy_j")(r) is not None for r in records)
        names[at:at] = (*MEMORY_COLUMNS, *(ENERGY_COLUMNS if energy else ()))
    return names


def _sorted(records: Sequence[MeasurementRecord], sort: str | None) -> list[MeasurementRecord]:
    """``records`` by the column ``sort`` names (``-p99``: descending); a record without a
    value last either way; equal values in the order measured (the sort is stable)."""
    if not sort:
        return list(records)
    key = COLUMNS[sort.removeprefix("-")].key
    valued = [(key(r), i, r) for i, r in enumerate(records) if key(r) is not None]
    missing = [r for r in records if key(r) is None]
    if sort.startswith("-"):
        valued.sort(key=lambda t: (t[0], -t[1]), reverse=True)
    else:
        valued.sort(key=lambda t: (t[0], t[1]))
    return [r for _, _, r in valued] + missing


def _table(records: Sequence[MeasurementRecord], names: Sequence[str]) -> list[str]:
    cols = [COLUMNS[n] for n in names]
    rows = [[c.cell(r) for c in cols] for r in records]
    numeric = [i for i, c in enumerate(cols) if c.numeric]
    return align([[c.header for c in cols], *rows], numeric)


def _name(record: MeasurementRecord, verbose: bool) -> str:
    return f"{record.test} {record.label}" if verbose else record.label


def _hints(records: Sequence[MeasurementRecord], verbose: bool, policy: str) -> list[str]:
    lines = []
    for r in records:
        if not was_compared(r):
            continue
        c = headline(r)
        verdict = r.verdict
        load = f"; {host_load(r)}" if verbose and host_load(r) else ""
        if verdict == REGRESSION and verbose and c is not None:
            lines.append(f"regression: {_name(r, verbose)}: {comparison_reason(r, c)}{load}")
        elif verdict == PASS and verbose:
            seen = could_see(c for c in r.comparisons if c.verdict == PASS)
            if seen or load:
                lines.append(f"pass: {_name(r, verbose)}: {seen or 'compared'}{load}")
        elif verdict == IMPROVEMENT and c is not None:
            what = (
                comparison_reason(r, c)
                if verbose
                else f"{SHORT_METRIC.get(c.metric, c.metric)} {fmt_pct(c.change_pct)}"
            )
            lines.append(
                f"improvement: {_name(r, verbose)}: {what} — accept it with --triton-perf-save"
                f"{load}"
            )
        elif verdict == INCONCLUSIVE:
            note = c.note if c is not None and c.note else ""
            # The statistics' note says why: underpowered, or the windows too noisy.
            decided_here = ("underpowered", "windows too noisy", "undecided", "too few pairs")
            if not note.startswith(decided_here) and "unstable" not in note:
                note = "measurement unstable" + (f" ({note})" if note else "")
            more = (
                "a longer budget (--triton-perf-compare-budget-s)"
                if c is not None and c.change_ci is not None
                else "more windows (--triton-perf-compare-windows)"
            )
            lines.append(
                f"inconclusive: {_name(r, verbose)}: {note}; not gated: re-run on a "
                f"quieter machine or with {more}{load}"
            )
        if verbose and verdict != PASS:
            # The metrics that did pass, and what they could have seen.
            seen = could_see(c for c in r.comparisons if c.verdict == PASS)
            if seen:
                lines.append(f"pass: {_name(r, verbose)}: {seen}")
    lines.extend(_error_control(records))
    lines.extend(_missing(records, verbose, policy))
    return lines


def _missing(records: Sequence[MeasurementRecord], verbose: bool, policy: str) -> list[str]:
    """The measurements compared with no baseline: one line naming the baseline directory
    and the key directory searched (history) and, when no measurement of the run found
    one, the key directories that directory does hold; then a line per measurement where
    the reason is worth reading. ``warning:`` first under ``--triton-perf-no-baseline=warn``."""
    missing = [r for r in records if missing_baseline(r)]
    if not missing:
        return []
    n = len(missing)
    them = "them" if n != 1 else "it"
    history = [r for r in missing if r.baseline.get("dir")]
    places = sorted({(str(r.baseline["dir"]), str(r.baseline.get("key_dir"))) for r in history})
    where = "; ".join(f"searched {d} for key {k}" for d, k in places)
    ab = sum(r.baseline.get("mode") == "ab" for r in missing)
    if ab:
        where += ("; " if where else "") + f"{ab} not in the A/B reference"
    where = f" ({where})" if where else ""
    compared = [r for r in records if was_compared(r)]
    if history and len(missing) == len(compared):
        stored = sorted({k for r in history for k in r.baseline.get("stored_keys") or ()})
        line = (
            f"no baseline: none of the {n} compared measurement{'s' if n != 1 else ''} found "
            f"one{where}; key directories stored there: {', '.join(stored) or 'none'}"
        )
    else:
        line = f"no baseline: {n} measurement{'s' if n != 1 else ''}{where}"
    line += f"; not gated: record {them} with --triton-perf-save"
    if policy == "warn":
        line = f"warning: {line}, or fail on this with --triton-perf-no-baseline=fail"
    lines = [line]
    for r in missing:
        status = str(r.baseline.get("status") or NO_BASELINE)
        # "no baseline for this hardware" always gets its line: the baselines exist,
        # for another machine, and the reader must learn which.
        if verbose or status != NO_BASELINE:
            why = r.baseline.get("note")
            lines.append(f"  {_name(r, verbose)}: {status}" + (f" ({why})" if why else ""))
    return lines


def _error_control(records: Sequence[MeasurementRecord]) -> list[str]:
    """What the paired A/B verdicts of this run allow: with Holm's adjustment across each
    measurement's gated metrics, at most 2 alpha false alarms (a regression or an
    improvement of an unchanged model) per measurement; and the level of its passes."""
    designs = [
        d
        for r in records
        if was_compared(r)
        and isinstance(d := r.baseline.get("design"), dict)
        and isinstance(d.get("alpha"), float)
    ]
    if not designs:
        return []
    n, alpha = len(designs), max(d["alpha"] for d in designs)
    passes = [p for d in designs if isinstance(p := d.get("pass_alpha"), float)]
    at_margin = (
        f"; a change at a metric's margin passes at most {max(passes):g} of the time"
        if passes
        else ""
    )
    return [
        f"error control: A/B paired, Holm across each measurement's gated metrics at alpha "
        f"{alpha:g}: at most {2 * alpha:g} false alarms expected per measurement, "
        f"{2 * alpha * n:.2g} over the {n} compared in this run{at_margin}"
    ]


def _indented(header: list[str], rows: list[list[str]], text: tuple[str, ...]) -> list[str]:
    """A table two spaces in; the columns whose header is in ``text`` left-aligned, the
    figures right-aligned."""
    numeric = [i for i, h in enumerate(header) if h not in text]
    return ["  " + line for line in align([header, *rows], numeric)]


def _analysis(records: Sequence[MeasurementRecord], verbose: bool) -> list[str]:
    """The capacity and configuration searches behind the records."""
    lines = []
    for r in records:
        cap = capacity_of(r)
        if cap is not None:
            if verbose:
                lines.append(f"capacity search: {r.test}: {capacity_title(cap)}")
                header, rows = capacity_table(cap)
                lines += _indented(header, rows, ("phase", "result"))
            lines.append(f"{capacity_headline(cap)} — {r.test}, {capacity_effort(cap)}")
            lines += [f"  note: {n}" for n in capacity_notes(cap)]
        search = search_of(r)
        if search is not None:
            lines.append(f"configuration search: {r.test}: {search_title(search)}")
            header, rows = search_table(search)
            lines += _indented(header, rows, ("candidate", "values", "SLA", "status"))
            lines += search_lines(search)
            diff = best_diff(search)
            if verbose and diff:
                lines.append("best config.pbtxt, diff against the committed one:")
                lines += ["  " + x for x in diff.rstrip("\n").splitlines()]
        group = group_of(r)
        if group is not None:
            lines.append(f"co-location: {r.test}: {group_title(group)}")
            header, rows = group_table(group)
            lines += _indented(header, rows, ("model",))
            lines += [f"  {x}" for x in group_lines(group) if verbose or x.startswith("note")]
        fp = footprint_of(r)
        if fp is not None:
            lines.append(f"{footprint_headline(fp)} — {r.test}")
            if verbose:
                header, rows = footprint_table(fp)
                lines += _indented(header, rows, ("stage",))
                lines += [f"  {x}" for x in footprint_sources(fp)]
                lines.append("  placement:")
                lines += [f"    {x}" for x in placement_lines(fp)]
    return lines


def _sequences(records: Sequence[MeasurementRecord]) -> list[str]:
    """A line per measurement of a sequence model: its sequences, their latency, the
    model's sequence slots and the server's queue time, then what its notes say about the
    sequences (the default length perf_analyzer's rule chose, a backlog)."""
    lines = []
    for r in records:
        res = r.result
        count = res.get("sequences")
        if count is None:
            continue
        lat = res.get("sequence_latency_ms") or {}
        server = res.get("server") or {}
        parts = [f"{count} sequences ({res.get('sequence_errors') or 0} with errors)"]
        if lat:
            parts.append(
                f"sequence latency p50 {fmt(lat.get('p50'))} ms, p99 {fmt(lat.get('p99'))} ms"
            )
        parts.append(f"{res.get('sequence_slots')} sequence slots")
        if server:
            parts.append(f"server queue {fmt(server.get('queue_ms'))} ms/request")
        lines.append(f"sequences: {r.test} {r.label}: " + "; ".join(parts))
        lines += [f"  note: {n}" for n in res.get("notes") or [] if "sequence" in str(n)]
    return lines


def _kserve(records: Sequence[MeasurementRecord], verbose: bool) -> list[str]:
    """Measurements on a KServe V2 server other than Triton (``--triton-url`` to MLServer):
    one line per server naming the figures unavailable there and how many measurements it
    concerns; at ``-v``, why each figure is unavailable."""
    seen: dict[str, list[MeasurementRecord]] = {}
    for r in records:
        for n in r.result.get("notes") or []:
            if str(n).startswith(KSERVE_NOTE):
                seen.setdefault(str(n), []).append(r)
    lines = []
    for n, rs in seen.items():
        lines.append(f"note: {n} — {len(rs)} measurement{'s' if len(rs) != 1 else ''}")
        if verbose:
            why = rs[0].result.get("unavailable") or {}
            lines += [f"  {key}: {why[key]}" for key in KSERVE_FIGURES if key in why]
    return lines


def _pipelines(records: Sequence[MeasurementRecord]) -> list[str]:
    """Per measurement of an ensemble or a BLS model: what its steps are, then one row per
    step with the step's server figures and its share of one pipeline request."""
    lines = []
    for r in records:
        pipeline = pipeline_of(r)
        if pipeline is None:
            continue
        lines.append(f"pipeline: {r.test} {r.label}: {pipeline_title(pipeline)}")
        table = align([PIPELINE_HEADER, *pipeline_rows(pipeline)], range(1, len(PIPELINE_HEADER)))
        lines += ["  " + line for line in table]
    return lines


def _extra(records: Sequence[MeasurementRecord]) -> list[str]:
    """A line per test with ``triton_perf.extra_info``: ``extra_info: t.py::test_a: k=v``."""
    return [f"extra_info: {test}: {text}" for test, text in extra_infos(records)]


def render_terminal(
    records: Sequence[MeasurementRecord],
    verbosity: int = 0,
    *,
    columns: Sequence[str] | None = None,
    sort: str | None = None,
    no_baseline: str = "warn",
) -> list[str]:
    """The summary's lines for ``records`` at pytest verbosity ``verbosity`` (``-q`` is -1).

    ``columns``: the table's columns (names of :data:`COLUMNS`; None: the default table);
    ``sort``: a column to order its rows by (``-p99`` descending; None: as measured);
    ``no_baseline``: the ``--triton-perf-no-baseline`` policy (``warn``: the line about
    measurements without a baseline is a warning, shown at ``-q`` too).
    """
    if not records:
        return []
    count_line = f"triton-perf: {counts_text(records)}"
    if verbosity <= -2:
        return [count_line]
    verbose = verbosity > 0
    names = _columns(columns, verbose, records)
    rows = _sorted(records, sort)
    if verbosity < 0:
        shown = [r for r in rows if needs_attention(r)]
        lines = _table(shown, names) if shown else []
        if no_baseline == "warn":
            lines += _missing(records, False, no_baseline)[:1]
        return [*lines, count_line]
    lines = _table(rows, names)
    lines.extend(_hints(records, verbose, no_baseline))
    lines.extend(_extra(records))
    lines.extend(_sequences(records))
    lines.extend(_kserve(records, verbose))
    lines.extend(stream_lines(records, verbose))
    if verbose:
        lines.extend(_pipelines(records))
    lines.extend(_analysis(records, verbose))
    lines.append(count_line)
    return lines
