"""``triton-perf search``: a configuration search under an SLA, without a test (Model
Analyzer's workflow); the only subcommand that starts or needs Triton."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

from pytest_triton_perf.cli.common import EXIT_ERROR, EXIT_NOTHING_FEASIBLE, EXIT_OK, add_command
from pytest_triton_perf.errors import CliError
from pytest_triton_perf.report.text import align


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
    if args.method is not None:
        kwargs["method"] = args.method

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


def add_parser(sub: Any) -> None:
    """The ``search`` subcommand."""
    from pytest_triton_perf.capacity import METHODS
    from pytest_triton_perf.options import default
    from pytest_triton_perf.search import KEYS, OBJECTIVES, STRATEGIES

    p = add_command(
        sub,
        "search",
        help="search a model's configuration space under an SLA (starts or uses a server)",
        description=(
            "Load each candidate configuration of the space beside MODEL as "
            "MODEL__cfgN, measure it, and rank them; the committed config.pbtxt is "
            "MODEL__cfg0. Prints the ranked table and the best configuration's diff."
        ),
        exits=[
            (EXIT_OK, "a configuration holds the SLA"),
            (EXIT_NOTHING_FEASIBLE, "no configuration holds the SLA"),
            (EXIT_ERROR, "a usage or file error, or a server that cannot start"),
        ],
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
        default="predict",
        help="predict: a short probe of each candidate, a queueing model's capacity, one "
        "level at full length where it is predicted (a capacity over concurrency; else as "
        "race, or halving where racing does not apply); race: every candidate loaded, "
        "measured in interleaved rounds, the dominated dropped, the survivors at full "
        "length (an objective at a given load); "
        "halving: short measurements first, finalists at full length; grid: every "
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
    p.add_argument(
        "--method",
        choices=METHODS,
        help="capacity: ramp (one pass of a rising rate, then one steady level; the default "
        "over --request-rate) or search (doubling, then bisection; the default over "
        "concurrency)",
    )
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
