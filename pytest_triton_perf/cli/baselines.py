"""``triton-perf list`` and ``triton-perf show``: the stored baselines, read offline."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

from pytest_triton_perf.cli.common import DEFAULT_DIR, EXIT_ERROR, EXIT_OK, add_command
from pytest_triton_perf.errors import CliError
from pytest_triton_perf.report.text import align

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


def add_parsers(sub: Any) -> None:
    """The ``list`` and ``show`` subcommands."""
    p = add_command(
        sub,
        "list",
        help="list stored baselines",
        description="The stored baselines, per key directory (hardware/software key), with "
        "the number of runs and the last date and commit of each file. Reads files only.",
        exits=[(EXIT_OK, "listed (also: a directory with no baseline files)")],
    )
    p.add_argument(
        "--dir",
        default=DEFAULT_DIR,
        metavar="DIR",
        help="baseline directory (default: %(default)s)",
    )
    p.set_defaults(func=cmd_list)

    p = add_command(
        sub,
        "show",
        help="show the runs of one baseline file",
        description="One baseline file's runs: date, commit, config hash, throughput, p50, "
        "p99 (and every window with --windows). Reads files only.",
        exits=[(EXIT_OK, "shown")],
    )
    p.add_argument("file", metavar="FILE", help="a baseline file (.triton-perf/<key>/<name>.json)")
    p.add_argument("--windows", action="store_true", help="also print every window of every run")
    p.set_defaults(func=cmd_show)
