"""Our LLM figures against GenAI-Perf's and AIPerf's, alternated in one run.

The same text model on the same server, the same prompts, tokenizer, SLOs and load.

Usage::

    bash benchmarks/setup-genai-perf.sh        # prints the flags below
    python benchmarks/llm_vs_genai_perf.py --genai-perf .venv-genai/bin/genai-perf \
        --aiperf .venv-aiperf/bin/aiperf --perf-analyzer .bench/perf_analyzer/bin/perf_analyzer \
        --cuda-lib .bench/perf_analyzer/lib [--repeats 2] [--window-s 2] [--concurrency 4] \
        [--request-rate 20] [--out results.json]

The embedded Triton server serves a copy of the example's text model ``textgen`` (Python
backend, decoupled, the vLLM backend's inputs and output): the first token 40 ms after a
request arrives, one every 10 ms after it, pieces of two tokens; every fourth request in
arrival order is slow by construction (120 ms to the first token, 30 ms a token). The
prompts are one JSONL file that all three tools read (``{"text": ..., "output_length":
16}``: GenAI-Perf reads ``text``, AIPerf's ``single_turn`` and our ``prompts=`` read both),
and tokens are counted with the model's own ``tokenizer.json`` by all three (GenAI-Perf and
AIPerf load it with ``transformers.AutoTokenizer`` from the model's directory, we with the
``tokenizers`` library from the file).

The peers and what each is compared with (each tool on its own transport to Triton):

- **GenAI-Perf** 0.0.16 (``--endpoint-type kserve --backend vllm --streaming``): it drives
  perf_analyzer over gRPC ``ModelStreamInfer``; against our engine over gRPC.
- **AIPerf** 0.13.0 speaks HTTP only (OpenAI-style endpoints, or a Jinja payload template to
  any path): its ``template`` endpoint posts to Triton's ``generate_stream`` (server-sent
  events); against our engine with ``protocol="generate"`` (``--aiperf-ours grpc`` for gRPC).

At each load (a closed loop at ``--concurrency``, an open loop at a constant
``--request-rate``) the tools alternate (ours, peer, peer, ours, ...) and the script prints
the medians over the runs, and ours / peer:

1. TTFT p50 and p99; TPOT p50, p99 and mean (per request, (end-to-end - TTFT) / (tokens - 1):
   what GenAI-Perf and AIPerf call inter token latency); ITL p50 and p99 over every gap
   between two responses (vLLM's ITL; GenAI-Perf prints none, so it is read from
   perf_analyzer's profile export; AIPerf's ``inter_chunk_latency``);
2. request throughput, goodput (requests per second that met every SLO) and the share of
   requests that met them, with the same SLOs (``--slo``: TTFT, TPOT, end-to-end);
3. CPU seconds per 1,000 responses: the generator's (ours over its windows, every thread;
   perf_analyzer over its whole process, read from a wrapper's ``times``), and the whole
   tool's run (ours: this process during ``measure()``; GenAI-Perf and AIPerf: their whole
   process tree, wait4, Python start-up, tokenizer, export and AIPerf's services included),
   divided by the responses the server sent meanwhile (its request count times the pieces
   of a request).

Each tool reports its own figures as it prints them: GenAI-Perf and AIPerf interpolate
percentiles linearly, we take the nearest rank; the slow share (1 in 4) keeps p50 and p99
inside one mode each, where the two differ by little. Rates are each tool's own too: our
throughput counts the requests completed in the windows, our goodput and attainment the
requests started in them, followed to their end; GenAI-Perf divides the requests of
perf_analyzer's windows by the time from the first send to the last response; AIPerf the
requests sent during ``--benchmark-duration`` by the time to the last response.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, cast

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (
    EXAMPLE_MODELS,
    alternate,
    find_perf_analyzer,
    machine,
    median,
    parser,
    perf_analyzer_env,
    server_requests,
)

from pytest_triton_perf.measure.engine import MeasureSettings, measure
from pytest_triton_perf.measure.result import Protocol
from pytest_triton_perf.measure.stats import nearest_rank
from pytest_triton_perf.server.base import TritonServer
from pytest_triton_perf.server.local import LocalTritonServer

MODEL = "textgen"
SOURCE = EXAMPLE_MODELS / MODEL
TOKENS = 16  # output tokens of every request (each prompt's output_length)
SLOW_SHARE = 0.25
PROMPTS = 64
#: The template AIPerf renders for each request: Triton's generate_stream JSON body.
AIPERF_TEMPLATE = (
    '{"text_input": {{ text|tojson }}, "stream": true, "exclude_input_in_output": true,'
    " \"sampling_parameters\": {{ ('{\"max_tokens\": ' ~ max_tokens ~ '}')|tojson }}}"
)
#: Our SLO keys and the peers' names for the same per-request figure.
SLO_NAMES = {
    "ttft_ms": "time_to_first_token",
    "tpot_ms": "inter_token_latency",
    "e2e_ms": "request_latency",
}


@dataclass(frozen=True)
class Load:
    """One load level: a closed loop at ``value`` requests in flight, or an open loop of
    ``value`` requests per second at constant intervals."""

    kind: str  # "concurrency" or "request_rate"
    value: float

    def __str__(self) -> str:
        if self.kind == "concurrency":
            return f"concurrency {self.value:g}"
        return f"{self.value:g} requests/s"

    def genai_perf_args(self) -> list[str]:
        """GenAI-Perf's options (perf_analyzer's request-rate mode is constant by default)."""
        flag = "--concurrency" if self.kind == "concurrency" else "--request-rate"
        return [flag, f"{self.value:g}"]

    def aiperf_args(self) -> list[str]:
        """AIPerf's options."""
        if self.kind == "concurrency":
            return ["--concurrency", f"{self.value:g}"]
        return ["--request-rate", f"{self.value:g}", "--arrival-pattern", "constant"]

    def ours(self) -> dict[str, Any]:
        """Our ``measure()`` keywords (constant arrivals are the default)."""
        if self.kind == "concurrency":
            return {"concurrency": int(self.value)}
        return {"request_rate": self.value}


def responses_per_request(config: str) -> int:
    """Responses the model sends for :data:`TOKENS` tokens, by its ``tokens_per_piece``
    (``config``: its config.pbtxt): the first token alone, then groups."""
    found = re.search(r'key: "tokens_per_piece" value: \{ string_value: "(\d+)"', config)
    if found is None:
        sys.exit(f"{SOURCE}/config.pbtxt: no tokens_per_piece parameter")
    per_piece = max(1, int(found[1]))
    return 1 + -(-(TOKENS - 1) // per_piece)


@dataclass
class LlmFigures:
    """One tool's figures for one run."""

    ttft_p50: float
    ttft_p99: float
    tpot_p50: float
    tpot_p99: float
    tpot_avg: float
    itl_p50: float
    itl_p99: float
    throughput: float
    goodput: float
    attainment: float
    requests: int
    output_tokens_per_request: float
    gen_cpu_s: float | None  # the load generator's
    gen_responses: int
    tool_cpu_s: float  # the whole tool's run
    tool_responses: int

    @property
    def gen_cpu_per_1000(self) -> float:
        """The generator's CPU seconds per 1,000 responses (NaN: not separable)."""
        if self.gen_cpu_s is None or not self.gen_responses:
            return float("nan")
        return 1000 * self.gen_cpu_s / self.gen_responses

    @property
    def tool_cpu_per_1000(self) -> float:
        """The whole tool's CPU seconds per 1,000 responses."""
        return 1000 * self.tool_cpu_s / self.tool_responses if self.tool_responses else float("nan")


# --- the workload ------------------------------------------------------------------------


def model_repository(root: Path) -> tuple[Path, int]:
    """A repository holding a copy of ``textgen`` whose ``slow_share`` is :data:`SLOW_SHARE`,
    and the copy's responses per request."""
    repo = root / "models"
    shutil.copytree(SOURCE, repo / MODEL, ignore=shutil.ignore_patterns("__pycache__"))
    config = repo / MODEL / "config.pbtxt"
    text, n = re.subn(
        r'(key: "slow_share" value: \{ string_value: ")[^"]*(")',
        rf"\g<1>{SLOW_SHARE:g}\g<2>",
        config.read_text(),
    )
    if n != 1:
        sys.exit(f"{config}: no slow_share parameter to set")
    config.write_text(text)
    return repo, responses_per_request(text)


def write_prompts(path: Path, seed: int = 0) -> None:
    """:data:`PROMPTS` prompts of 16 to 64 words of the tokenizer's vocabulary, each asking
    for :data:`TOKENS` tokens: the one file every tool reads."""
    vocab = json.loads((SOURCE / "tokenizer.json").read_text())["model"]["vocab"]
    words = sorted(w for w in vocab if w != "[UNK]")
    rng = np.random.default_rng(seed)
    with path.open("w") as f:
        for _ in range(PROMPTS):
            text = " ".join(rng.choice(words, int(rng.integers(16, 65))))
            f.write(json.dumps({"text": text, "output_length": TOKENS}) + "\n")


def parse_slo(text: str) -> dict[str, float]:
    """``ttft_ms=100,tpot_ms=20,e2e_ms=400`` as a dict."""
    out = {}
    for item in text.split(","):
        key, _, value = item.partition("=")
        if key not in SLO_NAMES:
            sys.exit(f"--slo: {key!r} is not one of {', '.join(SLO_NAMES)}")
        out[key] = float(value)
    return out


def peer_goodput_args(slo: dict[str, float]) -> list[str]:
    """The SLOs as GenAI-Perf's and AIPerf's ``--goodput`` pairs."""
    return [f"{SLO_NAMES[k]}:{v:g}" for k, v in slo.items()]


# --- running a tool ----------------------------------------------------------------------


def run_tree(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[str, float]:
    """Run ``cmd`` to its end: its output and the CPU seconds of its whole process tree
    (wait4: the process and every descendant it waited for)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    assert proc.stdout is not None
    with proc.stdout:
        text = proc.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    code = proc.returncode = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"{Path(cmd[0]).name} failed ({code}):\n{text[-3000:]}")
    return text, usage.ru_utime + usage.ru_stime


def pooled_gaps(profile: Path) -> list[float]:
    """Every gap (ms) between two responses of a request in perf_analyzer's profile export,
    responses without text dropped (as GenAI-Perf drops them)."""
    gaps: list[float] = []
    for experiment in json.loads(profile.read_text())["experiments"]:
        for r in experiment["requests"]:
            times = [
                t
                for t, out in zip(r["response_timestamps"], r["response_outputs"], strict=False)
                if (out or {}).get("text_output")
            ]
            gaps += (np.diff(times) / 1e6).tolist()
    return gaps


@dataclass(frozen=True)
class Tools:
    """The peers' commands and environments, and the run's shared settings."""

    genai_perf: str | None
    aiperf: str | None
    pa_env: dict[str, str]  # PATH leads to the perf_analyzer wrapper
    pa_times: Path  # the wrapper writes perf_analyzer's `times` here
    prompts: Path
    template: Path
    work: Path
    window_s: float
    slo: dict[str, float]
    aiperf_ours: Protocol
    responses: int  # the model's responses per request


def genai_perf_run(tools: Tools, server: TritonServer, load: Load) -> LlmFigures:
    """One GenAI-Perf run over gRPC streaming, its figures from its JSON export."""
    assert tools.genai_perf
    art = Path(tempfile.mkdtemp(dir=tools.work, prefix="genai-perf-"))
    cmd = [tools.genai_perf, "profile", "-m", MODEL, "--endpoint-type", "kserve"]
    cmd += ["--backend", "vllm", "--streaming", "-u", server.grpc_url]
    cmd += ["--input-file", str(tools.prompts), "--tokenizer", str(SOURCE)]
    cmd += ["--output-tokens-mean", str(TOKENS), "--output-tokens-stddev", "0"]
    cmd += load.genai_perf_args()
    cmd += ["--measurement-interval", str(int(tools.window_s * 1000))]
    cmd += ["--goodput", *peer_goodput_args(tools.slo), "--artifact-dir", str(art)]
    tools.pa_times.unlink(missing_ok=True)
    before = server_requests(server, MODEL)
    _, cpu = run_tree(cmd, tools.pa_env, tools.work)
    responses = (server_requests(server, MODEL) - before) * tools.responses
    # `times` prints the shell's own user/sys, then its children's: perf_analyzer's
    children = tools.pa_times.read_text().splitlines()[1]
    pa_cpu = sum(float(m) * 60 + float(s) for m, s in re.findall(r"(\d+)m([\d.]+)s", children))
    doc = json.loads(next(art.rglob("profile_export_genai_perf.json")).read_text())
    gaps = np.sort(pooled_gaps(next(art.rglob("profile_export.json"))))
    throughput = doc["request_throughput"]["avg"]
    goodput = doc["request_goodput"]["avg"]
    shutil.rmtree(art, ignore_errors=True)
    return LlmFigures(
        ttft_p50=doc["time_to_first_token"]["p50"],
        ttft_p99=doc["time_to_first_token"]["p99"],
        tpot_p50=doc["inter_token_latency"]["p50"],
        tpot_p99=doc["inter_token_latency"]["p99"],
        tpot_avg=doc["inter_token_latency"]["avg"],
        itl_p50=nearest_rank(gaps, 50),
        itl_p99=nearest_rank(gaps, 99),
        throughput=throughput,
        goodput=goodput,
        attainment=goodput / throughput if throughput else float("nan"),
        requests=int(doc["request_count"]["avg"]),
        output_tokens_per_request=doc["output_sequence_length"]["avg"],
        gen_cpu_s=pa_cpu,
        gen_responses=responses,
        tool_cpu_s=cpu,
        tool_responses=responses,
    )


def aiperf_run(tools: Tools, server: TritonServer, load: Load) -> LlmFigures:
    """One AIPerf run on Triton's generate_stream (its template endpoint), its figures from
    its JSON export: a warm-up of 1 s, then three windows' worth of time."""
    assert tools.aiperf
    art = Path(tempfile.mkdtemp(dir=tools.work, prefix="aiperf-"))
    extra = {"payload_template": str(tools.template), "response_field": "text_output"}
    cmd = [tools.aiperf, "profile", "-m", MODEL, "--endpoint-type", "template"]
    cmd += ["--custom-endpoint", f"/v2/models/{MODEL}/generate_stream", "--streaming"]
    cmd += ["-u", f"http://{server.http_url}", "--extra-inputs", json.dumps(extra)]
    cmd += ["--input-file", str(tools.prompts), "--custom-dataset-type", "single_turn"]
    cmd += ["--dataset-sampling-strategy", "sequential", "--tokenizer", str(SOURCE)]
    cmd += [*load.aiperf_args(), "--warmup-duration", "1"]
    cmd += ["--benchmark-duration", f"{3 * tools.window_s:g}"]
    cmd += ["--goodput", " ".join(peer_goodput_args(tools.slo))]
    cmd += ["--ui-type", "none", "--no-server-metrics", "--no-gpu-telemetry"]
    cmd += ["--workers-max", "1", "--record-processors", "1"]
    cmd += ["--output-artifact-dir", str(art)]
    before = server_requests(server, MODEL)
    _, cpu = run_tree(cmd, dict(os.environ), tools.work)
    responses = (server_requests(server, MODEL) - before) * tools.responses
    doc = json.loads(next(art.rglob("profile_export_aiperf.json")).read_text())
    shutil.rmtree(art, ignore_errors=True)
    throughput = doc["request_throughput"]["avg"]
    goodput = doc["goodput"]["avg"]
    return LlmFigures(
        ttft_p50=doc["time_to_first_token"]["p50"],
        ttft_p99=doc["time_to_first_token"]["p99"],
        tpot_p50=doc["inter_token_latency"]["p50"],
        tpot_p99=doc["inter_token_latency"]["p99"],
        tpot_avg=doc["inter_token_latency"]["avg"],
        itl_p50=doc["inter_chunk_latency"]["p50"],
        itl_p99=doc["inter_chunk_latency"]["p99"],
        throughput=throughput,
        goodput=goodput,
        attainment=goodput / throughput if throughput else float("nan"),
        requests=int(doc["request_count"]["avg"]),
        output_tokens_per_request=doc["output_sequence_length"]["avg"],
        gen_cpu_s=None,
        gen_responses=0,
        tool_cpu_s=cpu,
        tool_responses=responses,
    )


def ours_run(tools: Tools, server: TritonServer, load: Load, protocol: Protocol) -> LlmFigures:
    """One run of our engine (one process, as the peers' one generator): a warm-up of 1 s
    and three windows."""
    settings = MeasureSettings(warmup_s=1.0, windows=3, window_s=tools.window_s, max_windows=3)
    before_req = server_requests(server, MODEL)
    before = resource.getrusage(resource.RUSAGE_SELF)
    r = measure(
        server,
        MODEL,
        settings=settings,
        workers=1,
        **load.ours(),
        protocol=protocol,
        prompts=str(tools.prompts),
        tokenizer=str(SOURCE / "tokenizer.json"),
        slo=tools.slo,
    )
    after = resource.getrusage(resource.RUSAGE_SELF)
    tool_responses = (server_requests(server, MODEL) - before_req) * tools.responses
    s = r.stream
    if r.errors or s is None or r.tpot_ms is None or r.ttft_ms is None or r.itl_ms is None:
        raise RuntimeError(f"our run had errors or no stream figures: {r.first_error}")
    assert r.goodput is not None and r.slo_attainment is not None
    return LlmFigures(
        ttft_p50=r.ttft_ms.p50,
        ttft_p99=r.ttft_ms.p99,
        tpot_p50=r.tpot_ms.p50,
        tpot_p99=r.tpot_ms.p99,
        tpot_avg=r.tpot_ms.avg,
        itl_p50=r.itl_ms.p50,
        itl_p99=r.itl_ms.p99,
        throughput=r.throughput,
        goodput=r.goodput,
        attainment=r.slo_attainment,
        requests=r.requests,
        output_tokens_per_request=(s.output_tokens or 0) / max(s.requests, 1),
        gen_cpu_s=r.client_cpu_s,
        gen_responses=s.responses,
        tool_cpu_s=(after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        tool_responses=tool_responses,
    )


# --- the report --------------------------------------------------------------------------

ROWS = (
    ("TTFT p50 (ms)", "ttft_p50", 1),
    ("TTFT p99 (ms)", "ttft_p99", 1),
    ("TPOT p50 (ms)", "tpot_p50", 2),
    ("TPOT p99 (ms)", "tpot_p99", 2),
    ("TPOT mean (ms)", "tpot_avg", 2),
    ("ITL p50, every gap (ms)", "itl_p50", 2),
    ("ITL p99, every gap (ms)", "itl_p99", 2),
    ("output tokens / request", "output_tokens_per_request", 2),
    ("requests/s", "throughput", 2),
    ("goodput (requests/s)", "goodput", 2),
    ("SLO attainment", "attainment", 3),
    ("generator CPU s / 1,000 responses", "gen_cpu_per_1000", 3),
    ("whole tool CPU s / 1,000 responses", "tool_cpu_per_1000", 3),
)


def print_table(title: str, peer: str, ours: list[LlmFigures], theirs: list[LlmFigures]) -> None:
    """The medians side by side and ours / theirs, as a Markdown table."""
    print(f"\n{title}\n")
    print(f"| figure | ours | {peer} | ours / {peer} |")
    print("|---|---:|---:|---:|")
    for name, attr, digits in ROWS:
        a, b = median(ours, attr), median(theirs, attr)
        ratio = a / b if b and np.isfinite(a) and np.isfinite(b) else float("nan")
        cell_b = "-" if np.isnan(b) else f"{b:.{digits}f}"
        cell_r = "-" if np.isnan(ratio) else f"{ratio:.2f}"
        print(f"| {name} | {a:.{digits}f} | {cell_b} | {cell_r} |", flush=True)


@contextlib.contextmanager
def workspace() -> Iterator[Path]:
    """A scratch directory removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="llm-vs-genai-perf-") as tmp:
        yield Path(tmp)


def perf_analyzer_wrapper(work: Path, binary: str) -> tuple[Path, Path]:
    """A ``perf_analyzer`` on PATH for GenAI-Perf that runs the real one and writes its CPU
    (``times``) to a file: the directory to put first on PATH, and that file."""
    bin_dir, times = work / "pa-bin", work / "pa-times.txt"
    bin_dir.mkdir()
    wrapper = bin_dir / "perf_analyzer"
    wrapper.write_text(f'#!/bin/bash\n"{binary}" "$@"\nrc=$?\ntimes > "{times}"\nexit $rc\n')
    wrapper.chmod(0o755)
    return bin_dir, times


def main() -> None:
    """Run every load against each peer and print the tables."""
    ap = parser(__doc__, repeats=2, window_s=2.0, per="load and peer")
    ap.add_argument("--genai-perf", help="path of genai-perf (skipped when not given)")
    ap.add_argument("--aiperf", help="path of aiperf (skipped when not given)")
    ap.add_argument("--concurrency", default="4", help="closed-loop levels (4; '' for none)")
    ap.add_argument("--request-rate", default="", help="open-loop levels, requests/s (none)")
    ap.add_argument(
        "--slo",
        default="ttft_ms=100,tpot_ms=20,e2e_ms=400",
        help="per-request SLOs (ttft_ms=100,tpot_ms=20,e2e_ms=400)",
    )
    ap.add_argument(
        "--aiperf-ours",
        choices=("generate", "grpc"),
        default="generate",
        help="our protocol in the runs against AIPerf (generate: its generate_stream)",
    )
    args = ap.parse_args()
    if not (args.genai_perf or args.aiperf):
        sys.exit("give --genai-perf and/or --aiperf (benchmarks/setup-genai-perf.sh)")
    loads = [Load("concurrency", int(c)) for c in args.concurrency.split(",") if c]
    loads += [Load("request_rate", float(r)) for r in args.request_rate.split(",") if r]
    if not loads:
        sys.exit("give --concurrency and/or --request-rate levels")
    report: dict[str, Any] = {
        "machine": machine(),
        "command": " ".join([sys.executable, *sys.argv]),
        "results": {},
    }
    with workspace() as work:
        pa_env = dict(os.environ)
        pa_times = work / "pa-times.txt"
        if args.genai_perf:
            binary = str(Path(find_perf_analyzer(args.perf_analyzer)).resolve())
            bin_dir, pa_times = perf_analyzer_wrapper(work, binary)
            cuda_lib = str(Path(args.cuda_lib).resolve()) if args.cuda_lib else None
            pa_env = perf_analyzer_env(cuda_lib)
            pa_env["PATH"] = os.pathsep.join([str(bin_dir), pa_env.get("PATH", "")])
        prompts, template = work / "prompts.jsonl", work / "template.json"
        write_prompts(prompts)
        template.write_text(AIPERF_TEMPLATE)
        repository, responses = model_repository(work)
        tools = Tools(
            genai_perf=str(Path(args.genai_perf).resolve()) if args.genai_perf else None,
            aiperf=str(Path(args.aiperf).resolve()) if args.aiperf else None,
            pa_env=pa_env,
            pa_times=pa_times,
            prompts=prompts,
            template=template,
            work=work,
            window_s=args.window_s,
            slo=parse_slo(args.slo),
            aiperf_ours=cast(Protocol, args.aiperf_ours),
            responses=responses,
        )
        peers: list[tuple[str, Protocol, Callable[..., LlmFigures]]] = []
        if tools.genai_perf:
            peers.append(("GenAI-Perf", "grpc", genai_perf_run))
        if tools.aiperf:
            peers.append(("AIPerf", tools.aiperf_ours, aiperf_run))
        with LocalTritonServer([repository], models=[MODEL]) as server:
            report["triton"] = server.version
            for load in loads:
                for peer, protocol, run in peers:
                    started = time.monotonic()
                    ours, theirs = alternate(
                        args.repeats,
                        partial(ours_run, tools, server, load, protocol),
                        partial(run, tools, server, load),
                    )
                    report["results"][f"{peer}, {load}"] = {
                        "our_protocol": protocol,
                        "ours": [dict(vars(f)) for f in ours],
                        "peer": [dict(vars(f)) for f in theirs],
                    }
                    print_table(
                        f"{peer}, {load} (ours over {protocol}; medians of"
                        f" {args.repeats} runs each, {time.monotonic() - started:.0f} s)",
                        peer,
                        ours,
                        theirs,
                    )
    print(
        f"\nmachine: {report['machine']}; Triton {report.get('triton')}; SLOs {tools.slo};"
        f" load at the end {os.getloadavg()[0]:.1f}"
    )
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
