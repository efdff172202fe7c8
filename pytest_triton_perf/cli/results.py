"""``triton-perf render``, ``merge`` and ``compare``: the reports of results files written by
``--triton-perf-json``, offline."""

from __future__ import annotations

import argparse
import dataclasses
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from pytest_triton_perf.cli.common import DEFAULT_DIR, EXIT_OK, EXIT_REGRESSION, add_command
from pytest_triton_perf.errors import CliError
from pytest_triton_perf.report.context import DEFAULT_TITLE, ReportContext
from pytest_triton_perf.report.json_report import read_results
from pytest_triton_perf.report.registry import (
    Request,
    add_cli_options,
    cli_requests,
    write_reports,
)
from pytest_triton_perf.report.text import align
from pytest_triton_perf.verdicts import (
    INCONCLUSIVE,
    NO_BASELINE,
    NOT_COMPARED,
    REGRESSION,
    VERDICTS,
    MeasurementRecord,
)

# -- render --------------------------------------------------------------------------------


def _write_reports(
    requests: Sequence[Request],
    records: list[MeasurementRecord],
    context: ReportContext,
    out: TextIO,
) -> None:
    """Write the outputs the command line asked for (the registry's), a line per file."""
    for written in write_reports(requests, records, context):
        for line in written.cli_lines():
            print(line, file=out)


def _table_options(args: argparse.Namespace) -> tuple[tuple[str, ...] | None, str | None]:
    """``--columns`` and ``--sort``, parsed as the plugin's options are."""
    from pytest_triton_perf.errors import ConfigError
    from pytest_triton_perf.options import parsers

    try:
        columns = parsers.columns("--columns", args.columns) if args.columns else None
        sort = parsers.sort_column("--sort", args.sort) if args.sort else None
    except ConfigError as e:
        raise CliError(str(e)) from None
    return columns, sort


def _print_terminal(
    records: Sequence[MeasurementRecord], args: argparse.Namespace, out: TextIO
) -> None:
    from pytest_triton_perf.report.terminal import render_terminal

    columns, sort = _table_options(args)
    verbosity = args.verbose - args.quiet
    lines = render_terminal(records, verbosity, columns=columns, sort=sort)
    for line in lines or ["no measurements"]:
        print(line, file=out)


def cmd_render(args: argparse.Namespace, out: TextIO) -> int:
    """Render the reports of a results file."""
    _table_options(args)  # a bad column is an error before anything is written
    document, records = read_results(args.results)
    requests = cli_requests(args)
    if args.terminal or not requests:
        _print_terminal(records, args, out)
    _write_reports(requests, records, _context(document, args), out)
    return EXIT_OK


# -- merge ---------------------------------------------------------------------------------


def cmd_merge(args: argparse.Namespace, out: TextIO) -> int:
    """Merge the results files (and baseline directories) of a sharded run."""
    from pytest_triton_perf.report.json_report import write_json
    from pytest_triton_perf.report.merge import merge_results

    _table_options(args)
    requests = cli_requests(args)
    for d in args.baselines:
        if not Path(d).is_dir():
            raise CliError(
                f"--baselines {d}: no such directory; give a shard's baseline directory "
                f"(its --triton-perf-baseline-dir)"
            )
    parts = []
    for path in args.results:
        document, records = read_results(path)
        parts.append((Path(path), document, records))
    merged = merge_results(parts)
    _print_terminal(merged.records, args, out)
    shards = [str(s["shard"]) for s in merged.document["session"]["merged_from"] if s["shard"]]
    print(
        f"merged {len(parts)} results file{'s' if len(parts) != 1 else ''}"
        + (f" (shards {', '.join(shards)})" if shards else "")
        + f": {len(merged.records)} measurement{'s' if len(merged.records) != 1 else ''}",
        file=out,
    )
    for note in merged.notes:
        print(f"note: {note}", file=out)
    if args.output:
        write_json(args.output, merged.document)
        print(f"wrote {args.output}", file=out)
    if args.baselines:
        _merge_baselines(args.baselines, Path(args.baseline_dir), out)
    context = ReportContext(
        environment=merged.document["environment"],
        session=merged.document["session"],
        title=args.title,
    )
    _write_reports(requests, merged.records, context, out)
    failed = sorted({r.test for r in merged.records if r.outcome == "failed"})
    for test in failed:
        print(f"failed: {test}", file=out)
    for shard in merged.missing:
        print(f"missing: shard {shard}: no results file of it was given", file=out)
    return EXIT_REGRESSION if failed or merged.missing else EXIT_OK


def _merge_baselines(sources: Sequence[str], destination: Path, out: TextIO) -> None:
    """Each shard's baseline directory into ``destination``: runs united per file (none
    lost, none twice, the newest kept), test durations the newest per test."""
    from pytest_triton_perf.baseline.shards import merge_durations
    from pytest_triton_perf.baseline.store import BaselineError, BaselineStore

    store = BaselineStore(destination)
    files = runs = 0
    durations = False
    try:
        for source in sources:
            if Path(source).resolve() == destination.resolve():
                continue
            changed, added = store.merge(source)
            files += changed
            runs += added
            durations = merge_durations(destination, Path(source)) or durations
    except BaselineError as e:
        raise CliError(str(e)) from None
    print(
        f"baselines: merged {len(sources)} director{'ies' if len(sources) != 1 else 'y'} "
        f"into {destination}: {files} file(s) changed, {runs} run(s) added"
        + ("; test durations updated" if durations else ""),
        file=out,
    )


def _context(document: Mapping[str, Any], args: argparse.Namespace) -> ReportContext:
    """The reports' context from a results file: its environment and session."""
    return ReportContext(
        environment=document.get("environment") or {},
        session=document.get("session") or {},
        title=args.title,
    )


# -- compare -------------------------------------------------------------------------------


def _match(
    base: Sequence[MeasurementRecord], current: Sequence[MeasurementRecord]
) -> tuple[list[tuple[MeasurementRecord, MeasurementRecord]], list[str], list[str]]:
    """Pairs matched by (test id, label, occurrence), and the labels found on one side only.

    The occurrence number keeps apart a workload measured twice in one test.
    """

    def keyed(records: Sequence[MeasurementRecord]) -> dict[tuple[str, str, int], Any]:
        seen: Counter[tuple[str, str]] = Counter()
        out = {}
        for r in records:
            out[(r.test, r.label, seen[(r.test, r.label)])] = r
            seen[(r.test, r.label)] += 1
        return out

    b, c = keyed(base), keyed(current)
    pairs = [(b[k], c[k]) for k in c if k in b]
    only_base = [f"{k[0]} {k[1]}" for k in b if k not in c]
    only_current = [f"{k[0]} {k[1]}" for k in c if k not in b]
    return pairs, only_base, only_current


def _gate(args: argparse.Namespace) -> Any:
    from pytest_triton_perf.baseline.compare import GateSettings
    from pytest_triton_perf.errors import ConfigError
    from pytest_triton_perf.metrics import parse_metric_map

    gate = GateSettings()
    try:
        if args.alpha is not None:
            if not 0 < args.alpha < 1:
                raise ConfigError(f"--alpha={args.alpha}: a number between 0 and 1 is accepted")
            gate = dataclasses.replace(gate, alpha=args.alpha)
        if args.min_effect:
            gate = gate.with_overrides(parse_metric_map(args.min_effect, where="--min-effect"))
    except ConfigError as e:
        raise CliError(str(e)) from None
    return gate


def cmd_compare(args: argparse.Namespace, out: TextIO) -> int:
    """Compare two results files; exit 1 when a metric regressed."""
    from pytest_triton_perf.baseline.history import compare_history
    from pytest_triton_perf.report.text import (
        comparison_reason,
        fmt,
        fmt_mde,
        fmt_p,
        fmt_pct,
        verdict_of,
    )

    gate = _gate(args)
    requests = cli_requests(args)
    base_doc, base = read_results(args.base)
    current_doc, current = read_results(args.current)
    pairs, only_base, only_current = _match(base, current)
    session = base_doc.get("session") or {}
    revision = {
        k: session.get(k) for k in ("date", "git_commit", "started") if session.get(k) is not None
    }

    compared: list[MeasurementRecord] = []
    rows = [
        [
            "test",
            "measurement",
            "metric",
            "base",
            "current",
            "change",
            "p-value",
            "could see",
            "verdict",
        ]
    ]
    for b, c in pairs:
        comps = compare_history([{"result": b.result, "session": "base"}], c.result, gate)
        record = dataclasses.replace(
            c,
            comparisons=tuple(comps),
            baseline={
                "mode": "history",
                "status": "compared",
                "file": str(args.base),
                "revision": revision,
                "histogram": b.histogram,
                "stream_histograms": b.stream_histograms,
            },
        )
        compared.append(record)
        for comp in comps:
            rows.append(
                [
                    c.test,
                    c.label,
                    comp.metric,
                    fmt(comp.baseline),
                    fmt(comp.current),
                    fmt_pct(comp.change_pct),
                    fmt_p(comp.p_value),
                    fmt_mde(comp.mde_pct),
                    comp.verdict,
                ]
            )
    if compared:
        for line in align(rows, numeric=(3, 4, 5, 6, 7)):
            print(line, file=out)
    for r in compared:
        for comp in r.comparisons:
            if comp.verdict == INCONCLUSIVE:
                print(f"inconclusive: {r.test} {r.label}: {comp.metric}: {comp.note}", file=out)
    for label in only_base:
        print(f"only in {args.base}: {label}", file=out)
    for label in only_current:
        print(f"only in {args.current}: {label} (no baseline)", file=out)

    regressions = [
        (r, comp) for r in compared for comp in r.comparisons if comp.verdict == REGRESSION
    ]
    for r, comp in regressions:
        print(f"regression: {r.test} {r.label}: {comparison_reason(r, comp)}", file=out)
    counts = Counter(verdict_of(r) for r in compared)
    summary = ", ".join(
        f"{counts.get(v, 0)} {v}" for v in VERDICTS if v not in (NO_BASELINE, NOT_COMPARED)
    )
    print(
        f"{len(compared)} measurement{'s' if len(compared) != 1 else ''} compared: {summary}; "
        f"{len(only_current)} only in {args.current}, {len(only_base)} only in {args.base}",
        file=out,
    )
    _write_reports(requests, compared, _context(current_doc, args), out)
    return EXIT_REGRESSION if regressions else EXIT_OK


# -- options -------------------------------------------------------------------------------


def _terminal_options(p: argparse.ArgumentParser) -> None:
    """The terminal summary's flags: verbosity, columns and order, as the plugin's."""
    from pytest_triton_perf.options.parsers import COLUMNS

    p.add_argument("-v", "--verbose", action="count", default=0, help="longer summary")
    p.add_argument("-q", "--quiet", action="count", default=0, help="shorter summary")
    p.add_argument(
        "--columns",
        metavar="COLS",
        help=f"columns of the table, comma-separated, from: {', '.join(COLUMNS)} (as "
        f"--triton-perf-columns)",
    )
    p.add_argument(
        "--sort",
        metavar="COL",
        help="sort the table by a column; -COL descending (as --triton-perf-sort)",
    )


def _report_options(p: argparse.ArgumentParser) -> None:
    add_cli_options(p)
    p.add_argument("--title", default=DEFAULT_TITLE, help="Markdown title (default: %(default)s)")


def add_parsers(sub: Any) -> None:
    """The ``render``, ``merge`` and ``compare`` subcommands."""
    p = add_command(
        sub,
        "render",
        help="render reports from a --triton-perf-json results file",
        description="The reports of a results file written by --triton-perf-json (the "
        "terminal summary, Markdown, JUnit, plots...), as the plugin would have written "
        "them. Reads files only.",
        exits=[(EXIT_OK, "rendered")],
    )
    p.add_argument("results", metavar="RESULTS.json")
    _report_options(p)
    p.add_argument(
        "--terminal",
        action="store_true",
        help="print the terminal summary (the default when no other output is asked for)",
    )
    _terminal_options(p)
    p.set_defaults(func=cmd_render)

    p = add_command(
        sub,
        "merge",
        help="merge the results files of a sharded run (--triton-perf-shard) into one, with "
        "one set of reports; merge the shards' baseline directories",
        description="Merge the results files of the shards of one run (each written by "
        "--triton-perf-json with --triton-perf-shard=K/N) into one results file and one set "
        "of reports; with --baselines, merge each shard's baseline directory into "
        "--baseline-dir (the runs of a file present in several united, the newest 20 kept).",
        exits=[
            (EXIT_OK, "merged, every merged measurement's test passed"),
            (EXIT_REGRESSION, "a merged measurement's test failed, or a shard of N is missing"),
        ],
    )
    p.add_argument("results", nargs="+", metavar="RESULTS.json")
    p.add_argument("-o", "--output", metavar="PATH", help="write the merged results file")
    p.add_argument(
        "--baselines",
        action="append",
        default=[],
        metavar="DIR",
        help="a shard's baseline directory, merged into --baseline-dir (once per shard)",
    )
    p.add_argument(
        "--baseline-dir",
        default=DEFAULT_DIR,
        metavar="DIR",
        help="the baseline directory the shards' are merged into (default: %(default)s)",
    )
    _report_options(p)
    _terminal_options(p)
    p.set_defaults(func=cmd_merge)

    p = add_command(
        sub,
        "compare",
        help="compare two results files measurement by measurement; exit 1 on a regression",
        description="Two results files (--triton-perf-json), measurement by measurement "
        "(matched by test id and label), with the plugin's statistics. Reads files only.",
        exits=[
            (EXIT_OK, "no regression"),
            (EXIT_REGRESSION, "a regression was found"),
        ],
    )
    p.add_argument("base", metavar="BASE.json")
    p.add_argument("current", metavar="CURRENT.json")
    p.add_argument("--alpha", type=float, default=None, help="significance level (default: 0.01)")
    p.add_argument(
        "--min-effect",
        metavar="SPEC",
        help="minimum effects, e.g. 'p50=5%%,p99=10%%,throughput=5%%' (the defaults)",
    )
    _report_options(p)
    p.set_defaults(func=cmd_compare)
