"""``triton-perf`` (also ``python -m pytest_triton_perf``): baselines and reports offline.

Nothing here starts or needs Triton:

- ``list [--dir .triton-perf]``: the stored baselines, per key directory (hardware/software
  key), with the number of runs and the last date and commit;
- ``show FILE [--windows]``: one baseline file's runs (date, commit, config hash,
  throughput, p50, p99, windows);
- ``render RESULTS.json [--markdown PATH] [--junit PATH] [--plots DIR] [--step-summary]
  [--terminal]``: the reports of a results file written by ``--triton-perf-json`` (the
  flags are those of the report registry, ``report/registry.py``);
- ``compare BASE.json CURRENT.json``: two results files, measurement by measurement (matched
  by test id and label), with the plugin's statistics.

Exit status: 0 fine, 1 a regression was found (``compare``), 2 a usage or file error (the
message names the file).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from pytest_triton_perf.errors import TritonPerfError
from pytest_triton_perf.options import BASELINE_DIR
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

EXIT_OK = 0
EXIT_REGRESSION = 1
EXIT_ERROR = 2
DEFAULT_DIR = BASELINE_DIR


class CliError(TritonPerfError):
    """A usage or file problem; the message is shown as it is and the exit status is 2."""


# -- baselines: the store is the lead's ``baseline.store``; only these two touch it --------


def _baseline_files(root: Path) -> Iterator[Path]:
    from pytest_triton_perf.baseline.store import BaselineStore

    return BaselineStore(root).iter_files()


def _read_baseline(path: Path) -> dict[str, Any]:
    """A validated baseline file; BaselineError (naming file and position) becomes a
    CliError."""
    from pytest_triton_perf.baseline.store import BaselineError, BaselineStore

    try:
        return BaselineStore(path.parent.parent).read_file(path)
    except BaselineError as e:
        raise CliError(str(e)) from None


# -- formatting --------------------------------------------------------------------------


def _key_summary(key: Mapping[str, Any]) -> str:
    """``triton=2.51.0, gpu_count=0, cpu=AMD EPYC 7B13, cpu_count=2`` (unset items left out)."""
    return ", ".join(f"{k}={v}" for k, v in key.items() if v not in (None, "", [], {}))


def _environment_of(key_dir: Path, first_doc: Mapping[str, Any] | None) -> str:
    """What a key directory stands for: its ``environment.json`` key, else the key stored
    in one of its baseline files."""
    env_file = key_dir / "environment.json"
    if env_file.is_file():
        from pytest_triton_perf.report.json_report import ResultsFileError, load_json

        try:
            env = load_json(env_file, "environment file")
        except ResultsFileError as e:
            return f"(unreadable: {e})"
        if isinstance(env, Mapping):
            key = env.get("key", env)
            if isinstance(key, Mapping):
                return _key_summary(key)
    if first_doc and isinstance(first_doc.get("key"), Mapping):
        return _key_summary(first_doc["key"])
    return "(no environment.json)"


def _short(value: Any, n: int = 12) -> str:
    return str(value)[:n] if value else "-"


def _run_figures(result: Mapping[str, Any]) -> tuple[str, str, str, str, str]:
    from pytest_triton_perf.report.text import fmt

    lat = result.get("latency_ms") or {}
    return (
        fmt(result.get("throughput"), 1),
        fmt(lat.get("p50")),
        fmt(lat.get("p99")),
        str(len(result.get("windows") or [])),
        str(result.get("errors", "-")),
    )


# -- list ----------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace, out: TextIO) -> int:
    """Print every key directory under ``--dir`` with its baseline files."""
    root = Path(args.dir)
    if not root.is_dir():
        raise CliError(
            f"{root}: no such baseline directory; record baselines with "
            f"`pytest --triton-perf-save`, or pass --dir DIR"
        )
    by_dir: dict[Path, list[Path]] = {}
    for f in _baseline_files(root):
        by_dir.setdefault(f.parent, []).append(f)
    if not by_dir:
        print(f"no baseline files under {root}", file=out)
        return EXIT_OK
    errors = []
    for key_dir, files in by_dir.items():
        rows = [["file", "runs", "last date", "last commit", "test", "label"]]
        first: dict[str, Any] | None = None
        for f in files:
            try:
                doc = _read_baseline(f)
            except CliError as e:
                errors.append(str(e))
                rows.append([f.name, "?", "unreadable", "-", "-", "-"])
                continue
            first = first or doc
            runs = doc.get("runs") or []
            last = runs[-1] if runs else {}
            rows.append(
                [
                    f.name,
                    str(len(runs)),
                    str(last.get("date") or "-"),
                    _short(last.get("git_commit")),
                    str(doc.get("test", "-")),
                    str(doc.get("label", "-")),
                ]
            )
        print(f"{key_dir}/", file=out)
        print(f"  environment: {_environment_of(key_dir, first)}", file=out)
        for line in align(rows, numeric=(1,)):
            print(f"  {line}", file=out)
    if errors:
        for message in errors:
            print(f"triton-perf: error: {message}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


# -- show ----------------------------------------------------------------------------------


def cmd_show(args: argparse.Namespace, out: TextIO) -> int:
    """Print one baseline file's runs."""
    from pytest_triton_perf.report.text import fmt

    path = Path(args.file)
    doc = _read_baseline(path)
    print(str(path), file=out)
    print(f"  test:     {doc.get('test', '-')}", file=out)
    print(f"  label:    {doc.get('label', '-')}", file=out)
    workload = doc.get("workload")
    if isinstance(workload, Mapping):
        print(f"  workload: {_key_summary(workload)}", file=out)
    if isinstance(doc.get("key"), Mapping):
        print(f"  key:      {_key_summary(doc['key'])}", file=out)
    runs = doc.get("runs") or []
    if not runs:
        print("  no runs", file=out)
        return EXIT_OK
    rows = [["run", "date", "commit", "config", "infer/s", "p50 ms", "p99 ms", "windows", "errors"]]
    for i, run in enumerate(runs, 1):
        rows.append(
            [
                str(i),
                str(run.get("date") or "-"),
                _short(run.get("git_commit")),
                _short(run.get("config_hash")),
                *_run_figures(run.get("result") or {}),
            ]
        )
    header, *lines = align(rows, numeric=(0, 4, 5, 6, 7, 8))
    print(f"\n  {header}", file=out)
    for run, line in zip(runs, lines, strict=True):
        print(f"  {line}", file=out)
        if args.windows:
            for w in (run.get("result") or {}).get("windows") or []:
                lat = w.get("latency_ms") or {}
                print(
                    f"        window {w.get('index')}: {fmt(w.get('duration_s'))} s, "
                    f"{w.get('requests')} requests, {fmt(w.get('throughput'), 1)} infer/s, "
                    f"p50 {fmt(lat.get('p50'))} ms, p99 {fmt(lat.get('p99'))} ms",
                    file=out,
                )
    return EXIT_OK


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


def cmd_render(args: argparse.Namespace, out: TextIO) -> int:
    """Render the reports of a results file."""
    from pytest_triton_perf.report.terminal import render_terminal

    document, records = read_results(args.results)
    requests = cli_requests(args)
    if args.terminal or not requests:
        verbosity = args.verbose - args.quiet
        for line in render_terminal(records, verbosity) or ["no measurements"]:
            print(line, file=out)
    _write_reports(requests, records, _context(document, args), out)
    return EXIT_OK


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
    from pytest_triton_perf.baseline.compare import compare_results
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
        comps = compare_results([b.result], c.result, gate, mode="history")
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


# -- entry point -----------------------------------------------------------------------------


def _report_options(p: argparse.ArgumentParser) -> None:
    add_cli_options(p)
    p.add_argument("--title", default=DEFAULT_TITLE, help="Markdown title (default: %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``triton-perf``."""
    parser = argparse.ArgumentParser(
        prog="triton-perf",
        description="Stored baselines and reports of pytest-triton-perf, without Triton.",
        epilog="Exit status: 0 ok, 1 regression found (compare), 2 usage or file error.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="list stored baselines")
    p.add_argument(
        "--dir",
        default=DEFAULT_DIR,
        metavar="DIR",
        help="baseline directory (default: %(default)s)",
    )
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("show", help="show the runs of one baseline file")
    p.add_argument("file", metavar="FILE", help="a baseline file (.triton-perf/<key>/<name>.json)")
    p.add_argument("--windows", action="store_true", help="also print every window of every run")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("render", help="render reports from a --triton-perf-json results file")
    p.add_argument("results", metavar="RESULTS.json")
    _report_options(p)
    p.add_argument(
        "--terminal",
        action="store_true",
        help="print the terminal summary (the default when no other output is asked for)",
    )
    p.add_argument("-v", "--verbose", action="count", default=0, help="longer summary")
    p.add_argument("-q", "--quiet", action="count", default=0, help="shorter summary")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser(
        "compare",
        help="compare two results files measurement by measurement; exit 1 on a regression",
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
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run ``triton-perf``; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args, out or sys.stdout))
    except TritonPerfError as e:  # each carries its message for the user
        print(f"triton-perf: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:  # `triton-perf list | head`: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except OSError as e:  # an output that cannot be written, a file that cannot be read
        where = f"{e.filename}: " if e.filename else ""
        print(f"triton-perf: error: {where}{e.strerror or e}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
