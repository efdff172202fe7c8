"""``triton-perf`` (also ``python -m pytest_triton_perf``): baselines and reports offline.

Nothing here but ``search`` starts or needs Triton:

- ``list [--dir .triton-perf]``: the stored baselines, per key directory (hardware/software
  key), with the number of runs and the last date and commit;
- ``show FILE [--windows]``: one baseline file's runs (date, commit, config hash,
  throughput, p50, p99, windows);
- ``render RESULTS.json [--markdown PATH] [--junit PATH] [--plots DIR] [--step-summary]
  [--terminal]``: the reports of a results file written by ``--triton-perf-json`` (the
  flags are those of the report registry, ``report/registry.py``);
- ``compare BASE.json CURRENT.json``: two results files, measurement by measurement (matched
  by test id and label), with the plugin's statistics;
- ``schema``: the JSON Schema of YAML suites (``triton-perf*.yaml``), for editors;
- ``merge RESULTS.json... [-o MERGED.json] [--baselines DIR]... [--baseline-dir DIR]``: the
  results files of a sharded run (``--triton-perf-shard=K/N``, one per CI runner) as one
  results file and one set of reports, and the shards' baseline directories merged into
  one (each file's runs united, the newest 20 kept);
- ``search MODEL --space SPACE (--model-repository DIR | --triton-url HOST:PORT)``: a
  configuration search under an SLA (Model Analyzer's workflow without a test): the ranked
  candidates, and the best ``config.pbtxt`` (``--output``).

Exit status: 0 fine, 1 a regression was found (``compare``), no configuration holds the
SLA (``search``), or a merged measurement failed its test or a shard is missing (``merge``),
2 a usage or file error (the message names the file).
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

from pytest_triton_perf.errors import CliError, TritonPerfError
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
EXIT_NOTHING_FEASIBLE = 1  # search: no configuration holds the SLA
EXIT_ERROR = 2
DEFAULT_DIR = BASELINE_DIR

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


# -- search --------------------------------------------------------------------------------


def _search_space(text: str) -> dict[str, Any]:
    """``--space``: JSON or YAML text, or ``@FILE`` holding it."""
    import yaml

    where = "--space"
    if text.startswith("@"):
        path = Path(text[1:])
        try:
            text = path.read_text()
        except OSError as e:
            raise CliError(f"--space={text}: cannot read {path}: {e.strerror or e}") from None
        where = f"--space file {path}"
    try:
        space = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise CliError(f"{where}: not JSON or YAML: {e}") from None
    if not isinstance(space, dict):
        raise CliError(
            f"{where}: a mapping of key -> list of values is accepted, e.g. "
            f'\'{{"instance_count": [1, 2], "dynamic_batching": [false, true]}}\'.'
        )
    return space


def _search_sla(text: str | None) -> dict[str, float]:
    """``--sla p99_ms=30,max_error_rate=0``."""
    bounds: dict[str, float] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError
            bounds[key.strip()] = float(value)
        except ValueError:
            raise CliError(
                f"--sla: {item.strip()!r} is not KEY=NUMBER; e.g. --sla p99_ms=30,max_error_rate=0"
            ) from None
    return bounds


def _search_settings(args: argparse.Namespace) -> Any:
    from pytest_triton_perf.measure.engine import MeasureSettings

    values = {"warmup_s": args.warmup_s, "windows": args.windows, "window_s": args.window_s}
    given = {k: v for k, v in values.items() if v is not None}
    if "windows" in given:
        given["max_windows"] = max(MeasureSettings.max_windows, given["windows"])
    return MeasureSettings(**given)


def cmd_search(args: argparse.Namespace, out: TextIO) -> int:
    """Search the configuration space of a model; exit 1 when none holds the SLA."""
    import json

    from pytest_triton_perf.search import run_search
    from pytest_triton_perf.search.objective import parse_objective, parse_sla
    from pytest_triton_perf.search.space import parse_space

    # Everything checked before a server starts.
    space = parse_space(_search_space(args.space))
    objective = parse_objective(args.objective)
    sla = _search_sla(args.sla)
    parse_sla(sla)
    settings = _search_settings(args)
    for flag, value in (("--concurrency", args.concurrency), ("--batch-size", args.batch_size)):
        if value is not None and value < 1:
            raise CliError(f"{flag}={value}: a whole number >= 1 is accepted")
    if args.request_rate is not None and args.request_rate <= 0:
        raise CliError(f"--request-rate={args.request_rate}: a number > 0 is accepted")
    repository = Path(args.model_repository) if args.model_repository else None
    if args.triton_grpc_url and not args.triton_url:
        raise CliError("--triton-grpc-url is set without --triton-url: give the HTTP address too.")
    if args.triton_url is None and repository is None:
        raise CliError(
            "give --model-repository DIR (a local server is started with MODEL) or "
            "--triton-url HOST:PORT (a running server; add --model-repository for the "
            "model's files when they are not where the server reads them)."
        )
    if repository is not None and not (repository / args.model / "config.pbtxt").is_file():
        raise CliError(
            f"--model-repository {repository}: no {args.model}/config.pbtxt there; give "
            f"the directory holding <model>/config.pbtxt."
        )
    kwargs: dict[str, Any] = {"protocol": args.protocol, "batch_size": args.batch_size or 1}
    if args.concurrency is not None:
        kwargs["concurrency"] = args.concurrency
    if args.request_rate is not None:
        kwargs["request_rate"] = args.request_rate
    if args.limit is not None:
        kwargs["limit"] = args.limit

    def progress(line: str) -> None:
        if not args.quiet:
            print(line, file=sys.stderr, flush=True)

    server: Any
    if args.triton_url:
        from pytest_triton_perf.server.remote import RemoteTritonServer

        server = RemoteTritonServer(
            args.triton_url, grpc_url=args.triton_grpc_url, models=[args.model]
        )
    else:
        from pytest_triton_perf.server.local import LocalTritonServer

        assert repository is not None
        progress(f"starting a local server with model '{args.model}' ...")
        server = LocalTritonServer([repository], models=[args.model], notify=progress)
    with server:
        result = run_search(
            server,
            args.model,
            space,
            objective=objective,
            sla=sla,
            strategy=args.strategy,
            settings=settings,
            model_repository=repository,
            notify=progress,
            **kwargs,
        )
    # The reports' rendering of a search (terminal and Markdown summaries tell it alike).
    from pytest_triton_perf.report import analysis

    document = result.to_dict()
    print(analysis.search_title(document), file=out)
    header, rows = analysis.search_table(document)
    for line in align([header, *rows], numeric=(0, 3, 4, 5, 6, 7, 8)):
        print(f"  {line}", file=out)
    for line in analysis.search_lines(document):
        print(line, file=out)
    if result.skipped:
        print(f"{result.skipped} combinations of the space skipped: not valid", file=out)
    if args.json:
        Path(args.json).write_text(json.dumps(document, indent=2) + "\n")
        print(f"search results written to {args.json}", file=out)
    best = result.best
    if best is None:
        return EXIT_NOTHING_FEASIBLE
    print(analysis.best_diff(document), file=out, end="")
    if args.output:
        Path(args.output).write_text(best.config_pbtxt)
        print(f"best config.pbtxt written to {args.output}", file=out)
    elif not best.committed:
        where = (repository or Path("<model repository>")) / args.model / "config.pbtxt"
        print(f"to commit it: add --output {where}", file=out)
    return EXIT_OK


# -- entry point -----------------------------------------------------------------------------


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
    _terminal_options(p)
    p.set_defaults(func=cmd_render)

    p = sub.add_parser(
        "merge",
        help="merge the results files of a sharded run (--triton-perf-shard) into one, with "
        "one set of reports; merge the shards' baseline directories",
        description="Merge the results files of the shards of one run (each written by "
        "--triton-perf-json with --triton-perf-shard=K/N) into one results file and one set "
        "of reports; with --baselines, merge each shard's baseline directory into "
        "--baseline-dir (the runs of a file present in several united, the newest 20 kept).",
        epilog="Exit status: 0 ok, 1 a merged measurement's test failed or a shard of N is "
        "missing, 2 usage or file error.",
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
    _search_parser(sub)
    p = sub.add_parser(
        "schema",
        help="print the JSON Schema of YAML suites (triton-perf*.yaml), for editors",
        description="The JSON Schema (draft 07) of a YAML suite; yaml-language-server "
        "reads it from a '# yaml-language-server: $schema=FILE' line at the top of a suite.",
    )
    p.set_defaults(func=cmd_schema)
    return parser


def cmd_schema(args: argparse.Namespace, out: TextIO) -> int:
    """The published schema file, as it is in the package."""
    from pytest_triton_perf.suite.schema import SCHEMA_FILE

    out.write(SCHEMA_FILE.read_text(encoding="utf-8"))
    return EXIT_OK


def _search_parser(sub: Any) -> None:
    from pytest_triton_perf.options import default
    from pytest_triton_perf.search import KEYS, OBJECTIVES, STRATEGIES

    p = sub.add_parser(
        "search",
        help="search a model's configuration space under an SLA (starts or uses a server)",
        description=(
            "Load each candidate configuration of the space beside MODEL as "
            "MODEL__cfgN, measure it, and rank them; the committed config.pbtxt is "
            "MODEL__cfg0. Prints the ranked table and the best configuration's diff."
        ),
        epilog="Exit status: 0 a configuration holds the SLA, 1 none does, 2 usage error.",
    )
    p.add_argument("model", metavar="MODEL")
    p.add_argument(
        "--model-repository",
        metavar="DIR",
        help="the model repository holding MODEL/config.pbtxt; without --triton-url a "
        "local server is started on it with MODEL only",
    )
    p.add_argument(
        "--triton-url",
        metavar="HOST:PORT",
        help="a running server (HTTP) that allows model control; the model's files are "
        "read from --model-repository",
    )
    p.add_argument(
        "--triton-grpc-url",
        metavar="HOST:PORT",
        help="the running server's gRPC endpoint (default: the HTTP port + 1)",
    )
    p.add_argument(
        "--space",
        required=True,
        metavar="SPACE",
        help=f"JSON or YAML mapping of key -> list of values, or @FILE; keys: "
        f"{', '.join(KEYS)}, parameters.<key>; e.g. "
        f'\'{{"instance_count": [1, 2], "dynamic_batching": [false, true]}}\'',
    )
    p.add_argument(
        "--objective",
        default="capacity",
        metavar="NAME",
        help=f"{', '.join(OBJECTIVES)} (default: %(default)s; capacity needs a latency bound "
        f"in --sla)",
    )
    p.add_argument(
        "--sla",
        metavar="KEY=N,...",
        help="constraints with the sla marker's keys, e.g. p99_ms=30,max_error_rate=0",
    )
    p.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default="halving",
        help="halving: short measurements first, finalists at full length; grid: every "
        "candidate at full length (default: %(default)s)",
    )
    p.add_argument(
        "--concurrency",
        type=int,
        metavar="N",
        help="closed-loop load (capacity: the level to start from; default 1)",
    )
    p.add_argument(
        "--request-rate",
        type=float,
        metavar="R",
        help="open-loop load in requests/s (capacity: searched over the rate from R)",
    )
    p.add_argument("--limit", type=float, metavar="N", help="capacity: highest load tried")
    p.add_argument("--batch-size", type=int, metavar="N", help="batch size (default: 1)")
    p.add_argument(
        "--protocol", choices=("grpc", "http"), default="grpc", help="(default: %(default)s)"
    )
    for flag, dest, kind, what in (
        ("--warmup-s", "warmup_s", float, "seconds of warm-up before each measurement"),
        ("--windows", "windows", int, "windows per measurement (at least)"),
        ("--window-s", "window_s", float, "seconds per window"),
    ):
        p.add_argument(
            flag,
            dest=dest,
            type=kind,
            metavar="N",
            help=f"full-length measurements: {what} (default: {default(dest)}; short ones "
            f"are at most 0.2 s, 2 windows of 0.3 s)",
        )
    p.add_argument(
        "--output",
        metavar="FILE",
        help="write the best config.pbtxt there (default: nothing is written; the diff "
        "and the path to commit it to are printed)",
    )
    p.add_argument("--json", metavar="FILE", help="write the search result as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=cmd_search)


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
