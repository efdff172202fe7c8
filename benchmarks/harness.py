"""The harness the ``*_vs_perf_analyzer.py`` benchmarks share: perf_analyzer found, set up and
run, the embedded server started, the two tools alternated in one run, medians side by side,
and the JSON report. Each benchmark keeps only its own workloads and columns.

perf_analyzer is found through ``--perf-analyzer``, ``$PERF_ANALYZER`` or PATH. It ships in the
``tritonclient`` wheel (``bin/perf_analyzer``) and needs ``libb64`` and ``libcudart.so.12``
(``nvidia-cuda-runtime-cu12``; put its ``nvidia/cuda_runtime/lib`` on LD_LIBRARY_PATH, or pass
``--cuda-lib``). On a glibc older than 2.38, tritonclient 2.60's binary does not start; 2.49's
does (``benchmarks/setup-perf-analyzer.sh`` installs it).

The rules every comparison here follows:

- both tools measure the same model of the same embedded server in the same run, alternated
  (ours, perf_analyzer, perf_analyzer, ours, ...: :func:`alternate`) so that drift of the
  shared machine hits both alike; only ratios measured in one run mean anything;
- perf_analyzer refuses to report an unstable point (exit 2); on a shared machine that is
  common, so it is then run once more with a looser stability band (30% instead of 10%);
- the generator's CPU: ours over the windows (every thread), perf_analyzer over its whole
  process (wait4), divided by the requests the server counted during its run.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pytest_triton_perf.load.model_info import fetch_stats  # noqa: E402
from pytest_triton_perf.measure.engine import MeasureSettings, measure  # noqa: E402
from pytest_triton_perf.measure.result import PerfResult  # noqa: E402
from pytest_triton_perf.measure.server_stats import StatsSnapshot  # noqa: E402
from pytest_triton_perf.server.base import TritonServer  # noqa: E402
from pytest_triton_perf.server.local import LocalTritonServer  # noqa: E402

#: The example's model repository and the benchmarks' own.
EXAMPLE_MODELS = REPO / "example_repo" / "models"
BENCH_MODELS = REPO / "benchmarks" / "models"

T = TypeVar("T")


@dataclass
class Figures:
    """One tool's figures for one run of a workload."""

    throughput: float
    p50_ms: float
    p99_ms: float
    requests: int
    cpu_s: float
    achieved_rate: float | None = None

    @property
    def cpu_per_1000(self) -> float:
        """CPU seconds per 1,000 requests."""
        return 1000 * self.cpu_s / self.requests if self.requests else float("nan")

    @classmethod
    def of(cls, r: PerfResult, *, achieved_rate: float | None = None) -> Figures:
        """Our engine's figures (``r`` from :func:`checked`)."""
        assert r.latency_ms is not None
        return cls(
            throughput=r.throughput,
            p50_ms=r.latency_ms.p50,
            p99_ms=r.latency_ms.p99,
            requests=r.requests,
            cpu_s=r.client_cpu_s or 0.0,
            achieved_rate=achieved_rate,
        )


def checked(r: PerfResult, *figures: str) -> PerfResult:
    """``r``, or RuntimeError when our run had errors or lacks one of ``figures``
    (attributes of :class:`PerfResult`: ``latency_ms``, ``stream``, ...)."""
    if r.errors or any(getattr(r, f) is None for f in figures):
        raise RuntimeError(f"our run had errors: {r.first_error}")
    return r


# --- perf_analyzer -----------------------------------------------------------------------


def find_perf_analyzer(given: str | None) -> str:
    """Path of the perf_analyzer binary, or exit with what to do."""
    for candidate in (given, os.environ.get("PERF_ANALYZER"), shutil.which("perf_analyzer")):
        if candidate and Path(candidate).is_file():
            return candidate
    sys.exit(
        "perf_analyzer not found: pass --perf-analyzer PATH or set PERF_ANALYZER "
        "(pip install tritonclient==2.49.0 into a separate venv gives bin/perf_analyzer)"
    )


def perf_analyzer_env(cuda_lib: str | None) -> dict[str, str]:
    """This process's environment, with ``cuda_lib`` (libcudart) first on LD_LIBRARY_PATH."""
    env = dict(os.environ)
    if cuda_lib:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (cuda_lib, env.get("LD_LIBRARY_PATH")) if p
        )
    return env


def server_requests(server: TritonServer, model: str) -> int:
    """Requests (success + fail) the server has counted for ``model`` so far."""
    s = StatsSnapshot.from_json(fetch_stats(server.http_url, model))
    return s.success + s.fail


class UnstableError(RuntimeError):
    """perf_analyzer found no stable measurement."""


@dataclass(frozen=True)
class PerfAnalyzerRun(Generic[T]):
    """One perf_analyzer run: what was read from its output file, the requests the server
    counted meanwhile, and its CPU seconds (wait4 over the whole process)."""

    value: T
    requests: int
    cpu_s: float


def _csv_row(path: Path) -> dict[str, str]:
    with path.open() as f:
        return next(csv.DictReader(f))


@dataclass(frozen=True)
class PerfAnalyzer:
    """The perf_analyzer binary, the environment it runs in, and its measurement window
    (``-p``, the same as ours)."""

    binary: str
    env: dict[str, str]
    window_ms: int

    def run(
        self,
        server: TritonServer,
        model: str,
        protocol: str,
        *,
        load: Sequence[str],
        output: tuple[str, str],
        read: Callable[[Path], T],
    ) -> PerfAnalyzerRun[T]:
        """One run on ``model``: ``load`` its load arguments, ``output`` (its flag, a file
        name) the file ``read`` reads the figures from. Run once more at 30% when it finds
        no stable point at 10% (exit 2); :class:`UnstableError` when it still finds none."""
        url = server.grpc_url if protocol == "grpc" else server.http_url
        flag, name = output
        for stability in (10, 30):
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / name
                cmd = [self.binary, "-m", model, "-u", url, "-i", protocol, *load]
                cmd += ["-p", str(self.window_ms), flag, str(out), "-s", str(stability)]
                cmd += ["-r", "10"]
                before = server_requests(server, model)
                proc = subprocess.Popen(
                    cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=self.env
                )
                assert proc.stdout is not None
                with proc.stdout:
                    text = proc.stdout.read().decode(errors="replace")
                _, status, usage = os.wait4(proc.pid, 0)
                code = proc.returncode = os.waitstatus_to_exitcode(status)
                requests = server_requests(server, model) - before
                if code == 2 and stability == 10:
                    continue  # unstable: once more with the looser band
                if code == 2:
                    raise UnstableError(
                        f"perf_analyzer found no stable point at 30%:\n{text[-500:]}"
                    )
                if code != 0 or not out.exists():
                    raise RuntimeError(f"perf_analyzer failed ({code}):\n{text[-2000:]}")
                value = read(out)
            return PerfAnalyzerRun(value, requests, usage.ru_utime + usage.ru_stime)
        raise AssertionError("unreachable")

    def figures(
        self,
        server: TritonServer,
        model: str,
        protocol: str,
        *,
        concurrency: int | None = None,
        rate: float | None = None,
        extra: Sequence[str] = (),
    ) -> Figures:
        """One load level on ``model`` (closed loop at ``concurrency`` or a constant
        ``rate``; ``extra``: more of its arguments), its figures from its CSV file."""
        if rate is not None:
            load = ["--request-rate-range", f"{rate:g}", "--request-distribution", "constant"]
        else:
            load = ["--concurrency-range", str(concurrency)]
        run = self.run(
            server, model, protocol, load=[*extra, *load], output=("-f", "pa.csv"), read=_csv_row
        )
        throughput = float(run.value["Inferences/Second"])
        return Figures(
            throughput=throughput,
            p50_ms=float(run.value["p50 latency"]) / 1000,
            p99_ms=float(run.value["p99 latency"]) / 1000,
            requests=run.requests,
            cpu_s=run.cpu_s,
            achieved_rate=throughput if rate is not None else None,
        )


# --- one run of both tools ---------------------------------------------------------------


def alternate(
    repeats: int, ours: Callable[[], T], theirs: Callable[[], T]
) -> tuple[list[T], list[T]]:
    """Run A B B A A B ... so that a trend of the machine hits both tools alike."""
    a: list[T] = []
    b: list[T] = []
    for k in range(repeats):
        order = (ours, theirs) if k % 2 == 0 else (theirs, ours)
        for fn in order:
            (a if fn is ours else b).append(fn())
    return a, b


def median(figures: Sequence[Any], attr: str) -> float:
    """The median of one figure over runs."""
    return statistics.median(getattr(f, attr) for f in figures)


def side_by_side(ours: Sequence[Any], theirs: Sequence[Any], attr: str, digits: int) -> str:
    """``ours | perf_analyzer``: the medians of one figure."""
    x, y = median(ours, attr), median(theirs, attr)
    return f"{x:.{digits}f} | {y:.{digits}f}"


#: The columns of a table of :class:`Figures`, ours | perf_analyzer, in :func:`figure_cells`.
FIGURE_COLUMNS = (
    "infer/s ours | PA",
    "p50 ms ours | PA",
    "p99 ms ours | PA",
    "CPU s/1000 resp ours | PA",
)


def figure_cells(
    ours: Sequence[Figures], theirs: Sequence[Figures], digits: tuple[int, int, int, int]
) -> tuple[str, ...]:
    """The cells of :data:`FIGURE_COLUMNS`, each with its number of ``digits``."""
    attrs = ("throughput", "p50_ms", "p99_ms", "cpu_per_1000")
    return tuple(side_by_side(ours, theirs, a, d) for a, d in zip(attrs, digits, strict=True))


def print_row(*cells: str) -> None:
    """A row of a table whose cells are joined by `` | ``."""
    print(" | ".join(cells), flush=True)


def machine() -> dict[str, Any]:
    """The context every figure here depends on."""
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
        "load_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def parser(doc: str, *, repeats: int, window_s: float, per: str) -> argparse.ArgumentParser:
    """The options every comparison takes (``per``: what ``--repeats`` counts runs of); a
    benchmark adds its own."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--perf-analyzer", help="path of perf_analyzer (else $PERF_ANALYZER, PATH)")
    ap.add_argument("--cuda-lib", help="directory holding libcudart.so.12, for perf_analyzer")
    ap.add_argument(
        "--repeats", type=int, default=repeats, help=f"runs of each tool per {per} ({repeats})"
    )
    ap.add_argument(
        "--window-s", type=float, default=window_s, help=f"measurement window ({window_s} s)"
    )
    ap.add_argument("--out", type=Path, help="write every figure to this JSON file")
    return ap


def add_session_settings(ap: argparse.ArgumentParser, what: str) -> None:
    """``--warmup-s``, ``--windows``, ``--window-s``: ``what``'s measurement settings, the
    session's defaults (``MeasureSettings()``) where not given (:func:`session_settings`)."""
    ap.add_argument("--warmup-s", type=float, help=f"{what} warm-up (the session's default)")
    ap.add_argument("--windows", type=int, help=f"{what} windows (the session's default)")
    ap.add_argument("--window-s", type=float, help="window length (the session's default)")


def session_settings(args: argparse.Namespace) -> MeasureSettings:
    """The settings :func:`add_session_settings`'s options give."""
    given = {"warmup_s": args.warmup_s, "windows": args.windows, "window_s": args.window_s}
    return MeasureSettings(**{k: v for k, v in given.items() if v is not None})


@dataclass
class Harness:
    """One comparison run: perf_analyzer found and set up, our engine's settings (a warm-up
    of 1 s, then 3 to 10 windows of ``--window-s``), and the report ``--out`` writes."""

    args: argparse.Namespace
    pa: PerfAnalyzer
    settings: MeasureSettings
    report: dict[str, Any]

    @classmethod
    def start(cls, args: argparse.Namespace) -> Harness:
        """From :func:`parser`'s options; exits when perf_analyzer is not found."""
        binary = find_perf_analyzer(args.perf_analyzer)
        return cls(
            args,
            PerfAnalyzer(binary, perf_analyzer_env(args.cuda_lib), int(args.window_s * 1000)),
            MeasureSettings(warmup_s=1.0, windows=3, window_s=args.window_s, max_windows=10),
            {
                "machine": machine(),
                "perf_analyzer": binary,
                "command": " ".join([sys.executable, *sys.argv]),
                "results": {},
            },
        )

    def ours(self, server: TritonServer, model: str, *figures: str, **workload: Any) -> PerfResult:
        """One run of our engine on ``model`` with the harness's settings, in one process
        (as perf_analyzer's one); ``workload``: :func:`measure`'s keywords. RuntimeError when
        it had errors or lacks one of ``figures`` (default: its latency)."""
        r = measure(server, model, settings=self.settings, workers=1, **workload)
        return checked(r, *(figures or ("latency_ms",)))

    @contextlib.contextmanager
    def serve(self, repository: Path, model: str) -> Iterator[TritonServer]:
        """The embedded server over ``repository`` with ``model`` loaded, stopped after."""
        with LocalTritonServer([repository], models=[model]) as server:
            self.report["triton"] = server.version
            yield server

    def compare(
        self, key: str, ours: Callable[[], T], theirs: Callable[[], T]
    ) -> tuple[list[T], list[T]]:
        """Both tools alternated ``--repeats`` times each; every run's figures kept in the
        report under ``key``."""
        a, b = alternate(self.args.repeats, ours, theirs)
        self.report["results"][key] = {
            "ours": [dict(vars(f)) for f in a],
            "perf_analyzer": [dict(vars(f)) for f in b],
        }
        return a, b

    def finish(self, *details: str) -> None:
        """The closing line (machine, Triton, ``details``) and the ``--out`` file."""
        print(
            f"\nmachine: {self.report['machine']}; Triton {self.report.get('triton')}"
            + "".join(f"; {d}" for d in details)
        )
        if self.args.out:
            self.args.out.write_text(json.dumps(self.report, indent=2))
