"""``triton-perf calibrate``: an A/A run of many load epochs that measures this machine's
per-load offset between two identical copies of a model, stored for A/B mode
(:mod:`pytest_triton_perf.baseline.calibration`)."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from pytest_triton_perf.cli.common import EXIT_ERROR, EXIT_OK, add_command
from pytest_triton_perf.errors import CliError

if TYPE_CHECKING:
    from pytest_triton_perf.baseline.epochs import Offset
    from pytest_triton_perf.baseline.reference import ReferenceModels
    from pytest_triton_perf.server.base import TritonServer

#: Fewest epochs a calibration rests on (its variance then has that many minus one df).
MIN_EPOCHS = 4


def measure_offsets(
    server: TritonServer,
    refs: ReferenceModels,
    model: str,
    *,
    epochs: int,
    pairs: int,
    load: Mapping[str, Any],
    out: TextIO | None = None,
) -> tuple[dict[str, Offset], list[int]]:
    """An A/A comparison of the two copies of ``model`` that ``refs`` loads, in ``epochs``
    load epochs of ``pairs`` pairs (the fixed design, both copies reloaded in a random
    order for each epoch), and each gated metric's offset variance from its epochs
    (``epochs.offset_variance``); returns it with the pairs of each epoch. ``out``
    gets a line per metric."""
    from pytest_triton_perf.baseline.ab import ABPlan, run_ab
    from pytest_triton_perf.baseline.compare import GateSettings
    from pytest_triton_perf.baseline.epochs import Offset, offset_variance
    from pytest_triton_perf.baseline.paired import PairedAnalysis
    from pytest_triton_perf.measure.engine import measure

    arms = refs.arms(model)
    if arms is None:
        raise CliError(f"model '{model}' is not in {refs.origin}")
    reference, candidate, _ = arms
    gate = GateSettings()
    plan = ABPlan(budget_s=0, blocks=epochs * pairs, epochs=epochs)

    def run(name: str, **kwargs: Any) -> Any:
        return measure(server, name, **kwargs, **load)

    outcome = run_ab(
        run,
        reference=reference,
        candidate=candidate,
        plan=plan,
        gate=gate,
        model=model,
        refresh=refs.refresher(model),
    )
    ref_blocks, cand_blocks = outcome.blocks
    analysis = PairedAnalysis(gate, (epochs,))
    analysis.streaming = any(b.stream is not None for b in (*ref_blocks, *cand_blocks))
    found: dict[str, Offset] = {}
    for metric in analysis.metrics:
        est = analysis.estimates(ref_blocks, cand_blocks, metric, outcome.epochs)
        tau2 = offset_variance(est) if est and len(est) >= MIN_EPOCHS else math.inf
        if not math.isfinite(tau2):
            if out is not None:
                print(f"  {metric}: too few data to calibrate", file=out)
            continue
        assert est is not None
        found[metric] = Offset(tau2, len(est))
        if out is not None:
            within = math.sqrt(sum(e.var * e.units for e in est) / len(est))
            print(
                f"  {metric}: offset sd {100 * math.sqrt(tau2):.2f}% per load; one pair "
                f"{100 * within:.2f}%",
                file=out,
            )
    return found, outcome.epochs


def cmd_calibrate(args: argparse.Namespace, out: TextIO) -> int:
    """Load two copies of MODEL (both from the model repository) and measure them against
    each other in ``--epochs`` load epochs; store each metric's offset variance."""
    from pytest_triton_perf.baseline import calibration
    from pytest_triton_perf.baseline.key import environment_key
    from pytest_triton_perf.baseline.reference import ReferenceModels
    from pytest_triton_perf.options import BASELINE_DIR
    from pytest_triton_perf.server.local import LocalTritonServer

    if args.epochs < MIN_EPOCHS:
        raise CliError(f"--epochs={args.epochs}: at least {MIN_EPOCHS} epochs are accepted")
    if args.pairs < 2:
        raise CliError(f"--pairs={args.pairs}: at least 2 pairs per epoch are accepted")
    repository = Path(args.model_repository)
    if not (repository / args.model / "config.pbtxt").is_file():
        raise CliError(
            f"--model-repository={repository}: no {args.model}/config.pbtxt there; give the "
            f"model repository that holds MODEL"
        )
    root = Path(args.baseline_dir or BASELINE_DIR)

    def progress(line: str) -> None:
        if not args.quiet:
            print(line, file=sys.stderr, flush=True)

    progress(f"starting a local server with model '{args.model}' ...")
    load: dict[str, Any] = {"protocol": args.protocol}
    if args.request_rate is not None:
        load["request_rate"] = args.request_rate
    else:
        load["concurrency"] = args.concurrency
    with LocalTritonServer([repository], models=[args.model], notify=progress) as server:
        refs = ReferenceModels(
            server,
            repository,
            origin=f"directory {repository}",
            candidates=[repository],
            pin=args.pin == "on",
        )
        try:
            progress(f"A/A: {args.epochs} load epochs of {args.pairs} pairs ...")
            print(f"A/A calibration of '{args.model}': {args.epochs} load epochs", file=out)
            found, sizes = measure_offsets(
                server,
                refs,
                args.model,
                epochs=args.epochs,
                pairs=args.pairs,
                load=load,
                out=out,
            )
        finally:
            refs.unload_all()
        key = environment_key(server.version, server.gpu_devices)
    if not found:
        raise CliError(f"no metric of '{args.model}' could be calibrated; raise --pairs")
    path = calibration.save(root, key, args.model, found, workload=load, pairs_per_epoch=sizes)
    print(f"calibration written to {path}", file=out)
    return EXIT_OK


def add_parser(sub: Any) -> None:
    """The ``calibrate`` subcommand."""
    p = add_command(
        sub,
        "calibrate",
        help="measure this machine's offset between two identical model copies (A/B mode "
        "reads it; starts a local server)",
        description=(
            "Load two identical copies of MODEL in a local server and measure them against "
            "each other in load epochs (both copies loaded anew for each); store the "
            "variance of the per-load offset of every gated metric under this machine's "
            "baseline key. A/B mode uses it instead of the spread between its own few "
            "epochs. Run it once per runner (and again when the machine changes)."
        ),
        exits=[
            (EXIT_OK, "calibrated: the offsets are stored under this machine's key"),
            (EXIT_ERROR, "a usage or file error, or a server that cannot start"),
        ],
    )
    p.add_argument("model", metavar="MODEL")
    p.add_argument(
        "--model-repository", required=True, metavar="DIR", help="the repository holding MODEL"
    )
    p.add_argument("--baseline-dir", metavar="DIR", help="where baselines are stored")
    p.add_argument("--epochs", type=int, default=10, help="load epochs (default: %(default)s)")
    p.add_argument(
        "--pairs", type=int, default=8, help="pairs of blocks per epoch (default: %(default)s)"
    )
    p.add_argument("--concurrency", type=int, default=1, help="default: %(default)s")
    p.add_argument("--request-rate", type=float, help="an open loop instead of concurrency")
    p.add_argument("--protocol", default="grpc", choices=("grpc", "http"))
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument(
        "--pin",
        choices=("on", "off"),
        default="on",
        help="pin both arms' backend processes instance by instance to the same CPUs, as "
        "A/B mode does (--triton-perf-ab-pin; default: %(default)s)",
    )
    p.set_defaults(func=cmd_calibrate)
