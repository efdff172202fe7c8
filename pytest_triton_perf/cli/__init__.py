"""``triton-perf`` (also ``python -m pytest_triton_perf``): baselines and reports offline.

Most subcommands read files only; ``search`` and ``calibrate`` measure, on a Triton server
they start (``search`` also on a running one, ``--triton-url``):

- ``list [--dir .triton-perf]``: the stored baselines, per key directory (hardware/software
  key), with the number of runs and the last date and commit;
- ``show FILE [--windows]``: one baseline file's runs (date, commit, config hash,
  throughput, p50, p99, windows);
- ``render RESULTS.json [--markdown PATH] [--junit PATH] [--plots DIR] [--step-summary]
  [--terminal]``: the reports of a results file written by ``--triton-perf-json`` (the
  flags are those of the report registry, ``report/registry.py``);
- ``compare BASE.json CURRENT.json``: two results files, measurement by measurement (matched
  by test id and label), with the plugin's statistics;
- ``history [--baselines DIR] [TEST...] [--fail-on-new N]``: the stored record as series of
  sessions, their change points (E-Divisive means) and creep; ``history accept TEST --at
  COMMIT`` records a change accepted on purpose;
- ``schema``: the JSON Schema of YAML suites (``triton-perf*.yaml``), for editors;
- ``merge RESULTS.json... [-o MERGED.json] [--baselines DIR]... [--baseline-dir DIR]``: the
  results files of a sharded run (``--triton-perf-shard=K/N``, one per CI runner) as one
  results file and one set of reports, and the shards' baseline directories merged into
  one (each file's runs united, the newest 20 kept);
- ``search MODEL --space SPACE (--model-repository DIR | --triton-url HOST:PORT)``: a
  configuration search under an SLA (Model Analyzer's workflow without a test): the ranked
  candidates, and the best ``config.pbtxt`` (``--output``).

Exit status: 0 fine, 1 a regression was found (``compare``), a new regression change point
(``history --fail-on-new``), no configuration holds the SLA (``search``), or a merged
measurement failed its test or a shard is missing (``merge``),
2 a usage or file error (the message names the file). Each subcommand declares its own
statuses where it is added (``common.add_command(..., exits=...)``): its ``--help`` lists
them and ``triton-perf --help`` sums them up.

One module per group of subcommands, each adding its own parsers: ``baselines`` (list,
show), ``results`` (render, merge, compare), ``history`` (history, history accept),
``search``, ``calibrate``; ``schema`` is here.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TextIO

from pytest_triton_perf.cli import baselines, calibrate, history, results, search
from pytest_triton_perf.cli.common import (
    EXIT_ERROR,
    EXIT_OK,
    HelpFormatter,
    add_command,
    exit_summary,
)
from pytest_triton_perf.errors import CliError as CliError
from pytest_triton_perf.errors import TritonPerfError


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``triton-perf``: each module adds its subcommands."""
    parser = argparse.ArgumentParser(
        prog="triton-perf",
        description="Stored baselines, results and reports of pytest-triton-perf. Most "
        "commands read files only; search and calibrate measure, on a Triton server they "
        "start (or, for search, the one at --triton-url).",
        formatter_class=HelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    baselines.add_parsers(sub)
    results.add_parsers(sub)
    search.add_parser(sub)
    calibrate.add_parser(sub)
    history.add_parser(sub)
    p = add_command(
        sub,
        "schema",
        help="print the JSON Schema of YAML suites (triton-perf*.yaml), for editors",
        description="The JSON Schema (draft 07) of a YAML suite; yaml-language-server "
        "reads it from a '# yaml-language-server: $schema=FILE' line at the top of a suite.",
        exits=[(EXIT_OK, "printed")],
    )
    p.set_defaults(func=cmd_schema)
    parser.epilog = exit_summary(sub)
    return parser


def cmd_schema(args: argparse.Namespace, out: TextIO) -> int:
    """The published schema file, as it is in the package."""
    from pytest_triton_perf.suite.schema import SCHEMA_FILE

    out.write(SCHEMA_FILE.read_text(encoding="utf-8"))
    return EXIT_OK


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run ``triton-perf``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["history", "accept"]:  # a subcommand of a command with positionals
        parser = argparse.ArgumentParser(prog="triton-perf history")
        history.add_accept_parser(parser.add_subparsers(dest="command", required=True))
        args = parser.parse_args(argv[1:])
    else:
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
