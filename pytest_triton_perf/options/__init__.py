"""The option table: every setting of the plugin with its flag, ini twin, parser, default
and help text, in one place.

No pytest import: the plugin registers each :class:`Option` as a command-line flag and an
ini key, :mod:`pytest_triton_perf.settings` builds the frozen settings from them, and the
launchers take their defaults from the constants named here. Each parser raises
:class:`~pytest_triton_perf.errors.ConfigError` naming the flag, the bad value and the
accepted form. A new option is one row here and one field of ``Settings``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pytest_triton_perf import metrics
from pytest_triton_perf.options import container, parsers

#: How long a launcher waits for the server it started and its models.
STARTUP_TIMEOUT_S = 120.0
#: How long the plugin waits for a running server (``--triton-url``) unless told: someone
#: else's server is up or not, and waiting longer for it only delays the error.
REMOTE_STARTUP_TIMEOUT_S = 30.0
#: Where baselines live, relative to pytest's rootdir (``--triton-perf-baseline-dir``).
BASELINE_DIR = ".triton-perf"
#: ``--triton-perf-disable``: each measurement is one window this long, without warm-up.
SMOKE_WINDOW_S = 0.25


def _gate_defaults(kind: str) -> str:
    """The comparison defaults of the metric catalogue, as the option would be written:
    ``p50=5%,...`` (minimum effects) or ``p50=0.2ms,...`` (floors)."""
    parts = []
    for m in metrics.GATED:
        assert m.gate is not None
        name = m.name.removesuffix("_ms")
        if kind == "effect":
            parts.append(f"{name}={m.gate.min_effect * 100:g}%")
        elif m.gate.floor:
            parts.append(f"{name}={m.gate.floor:g}ms")
    return ",".join(parts)


@dataclass(frozen=True)
class Option:
    """One setting: its flag, ini key, parser, default and help text.

    ``text`` says what the option does; :attr:`help` appends the default, written as
    ``shown`` or, without it, formatted from ``default``.
    """

    flag: str
    dest: str
    parse: Callable[[str, str], Any]
    default: Any
    metavar: str
    text: str
    shown: str | None = None  # the default in words, where the value alone says too little
    path: bool = False  # resolved relative to the ini file's directory when from the ini
    switch: bool = False  # a command-line switch without value and without ini twin
    # A shorter flag, registered as a twin only when no other plugin or conftest took it.
    alias: str | None = None

    @property
    def ini(self) -> str:
        """The ini twin: ``--triton-perf-window-s`` -> ``triton_perf_window_s``."""
        return self.flag.lstrip("-").replace("-", "_")

    @property
    def shown_default(self) -> str:
        """The default as the help text names it."""
        if self.shown is not None:
            return self.shown
        if self.default is None:
            return "none"
        if isinstance(self.default, bool):
            return "on" if self.default else "off"
        if isinstance(self.default, float):
            return f"{self.default:g}"
        return str(self.default)

    @property
    def help(self) -> str:
        """The help text of the flag and its ini key, ending with the default."""
        return f"{self.text} Default: {self.shown_default}."


OPTIONS: tuple[Option, ...] = (
    Option(
        "--triton-url",
        "url",
        parsers.address,
        None,
        "HOST:PORT",
        "HTTP address of a running Triton server to measure instead of starting one "
        "(host:port or http://host:port).",
        shown="none, start a local server",
    ),
    Option(
        "--triton-grpc-url",
        "grpc_url",
        parsers.address,
        None,
        "HOST:PORT",
        "gRPC address of that server.",
        shown="the --triton-url host at its port + 1",
    ),
    Option(
        "--triton-model-repository",
        "model_repository",
        parsers.non_empty_text,
        None,
        "DIR",
        "Triton model repository to serve (ini: relative to the ini file).",
        path=True,
    ),
    Option(
        "--triton-models",
        "models",
        parsers.name_list,
        None,
        "M1,M2",
        "Models to load from the repository.",
        shown="all of them",
    ),
    Option(
        "--triton-server-path",
        "server_path",
        parsers.non_empty_text,
        None,
        "PATH",
        "tritonserver binary (or a directory with bin/tritonserver).",
        shown="tritonserver on PATH, else the one shipped by nvidia-pytriton",
        path=True,
    ),
    Option(
        "--triton-image",
        "image",
        container.parse_image,
        None,
        "IMAGE",
        "Run Triton in a Docker container of this image (with a tag or digest, e.g. "
        "nvcr.io/nvidia/tritonserver:24.08-py3); --triton-url wins over it.",
        shown="none, start a local tritonserver",
    ),
    Option(
        "--triton-gpus",
        "gpus",
        container.parse_gpus,
        None,
        "GPUS",
        "GPUs for the --triton-image container, as Docker takes them: all, a count, "
        "device=0,2, GPU UUIDs, none. Also --gpus, unless another plugin or conftest "
        "defines that.",
        alias="--gpus",
    ),
    Option(
        "--triton-pull",
        "pull",
        container.parse_pull,
        container.PULL_POLICY,
        "POLICY",
        "When to pull the --triton-image: missing, always or never.",
    ),
    Option(
        "--triton-network",
        "network",
        container.parse_network,
        container.NETWORK_MODE,
        "MODE",
        "Container networking: host (Triton binds free 127.0.0.1 ports on the host's "
        "network) or ports (Triton's ports published on 127.0.0.1).",
    ),
    Option(
        "--triton-shm-size",
        "shm_size",
        container.parse_shm_size,
        container.SHM_SIZE,
        "SIZE",
        "/dev/shm of the container (the Python backend takes a region per model instance, "
        "1 MiB by default, growing with the tensors it passes; Docker's own default is 64 MB).",
    ),
    Option(
        "--triton-ipc",
        "ipc",
        container.parse_ipc,
        container.IPC_MODE,
        "MODE",
        "IPC namespace of the container: private (its own, with a /dev/shm of "
        "--triton-shm-size) or host (docker run --ipc=host: the host's /dev/shm and CUDA IPC, "
        "which measure(shared_memory='system'|'cuda') needs; --triton-shm-size does not apply).",
    ),
    Option(
        "--triton-ulimit-memlock",
        "ulimit_memlock",
        container.parse_ulimit,
        container.ULIMIT_MEMLOCK,
        "LIMIT",
        "memlock ulimit of the container: unlimited, bytes (k/m/g allowed) or off (the "
        "engine's default).",
        shown="unlimited, as NGC recommends",
    ),
    Option(
        "--triton-ulimit-stack",
        "ulimit_stack",
        container.parse_ulimit,
        container.ULIMIT_STACK,
        "LIMIT",
        "stack ulimit of the container: unlimited, bytes (k/m/g allowed) or off.",
        shown=f"{container.ULIMIT_STACK} ({container.ULIMIT_STACK // 2**20} MiB), "
        f"as NGC recommends",
    ),
    Option(
        "--triton-docker-kwargs",
        "docker_kwargs",
        container.parse_docker_kwargs,
        None,
        "JSON",
        "Extra arguments of docker-py's containers.create as a JSON object, e.g. "
        '\'{"cpuset_cpus": "0-3"}\'.',
    ),
    Option(
        "--triton-startup-timeout",
        "startup_timeout_s",
        parsers.positive_float,
        None,
        "SECONDS",
        "How long to wait for the server and its models to be ready (a running server at "
        "--triton-url too).",
        shown=f"{STARTUP_TIMEOUT_S:g} for a server the plugin starts, "
        f"{REMOTE_STARTUP_TIMEOUT_S:g} for one at --triton-url",
    ),
    Option(
        "--triton-perf-warmup-s",
        "warmup_s",
        parsers.non_negative_float,
        2.0,
        "SECONDS",
        "Warm-up before the measured windows of each measurement.",
    ),
    Option(
        "--triton-perf-windows",
        "windows",
        parsers.positive_int,
        3,
        "N",
        "Measured windows per measurement (at least).",
    ),
    Option(
        "--triton-perf-window-s",
        "window_s",
        parsers.positive_float,
        2.0,
        "SECONDS",
        "Length of one measurement window.",
    ),
    Option(
        "--triton-perf-disable",
        "disable",
        parsers.switch,
        False,
        "",
        f"Run the tests with every measurement shrunk to a smoke check: no warm-up, one "
        f"window of {SMOKE_WINDOW_S:g} s (a few requests, which must all succeed), and no "
        f"verdicts: no SLA checks, comparisons or saved baselines. For quick functional runs.",
        switch=True,
    ),
    Option(
        "--triton-perf-skip",
        "skip",
        parsers.switch,
        False,
        "",
        "Skip the perf tests (those using the triton_perf fixture or marked sla).",
        switch=True,
    ),
    Option(
        "--triton-perf-only",
        "only",
        parsers.switch,
        False,
        "",
        "Run only the perf tests (those using the triton_perf fixture or marked sla); skip "
        "the others.",
        switch=True,
    ),
    Option(
        "--triton-perf-shard",
        "shard",
        parsers.shard,
        None,
        "K/N",
        "Run shard K of N (one CI runner of N): each test belongs to exactly one shard, "
        "chosen from its id, balanced by the test durations stored with the baselines "
        "(durations.json, written by --triton-perf-save). Merge the shards' results with "
        "'triton-perf merge'.",
        shown="none, every test runs",
    ),
    Option(
        "--triton-perf-save",
        "save",
        parsers.switch,
        False,
        "",
        "Record this run's measurements (of passing tests) as accepted baseline runs.",
        switch=True,
    ),
    Option(
        "--triton-perf-compare",
        "compare",
        parsers.switch,
        False,
        "",
        "Compare each measurement with its stored baseline (history mode).",
        switch=True,
    ),
    Option(
        "--triton-perf-baseline-dir",
        "baseline_dir",
        parsers.non_empty_text,
        None,
        "DIR",
        "Where baselines are stored (commit it).",
        shown=f"{BASELINE_DIR} at the rootdir",
        path=True,
    ),
    Option(
        "--triton-perf-baseline-ref",
        "baseline_ref",
        parsers.non_empty_text,
        None,
        "REF",
        "A/B mode: load each measured model as it is at git revision REF beside the "
        "candidate and alternate their windows.",
    ),
    Option(
        "--triton-perf-baseline-repo",
        "baseline_repo",
        parsers.non_empty_text,
        None,
        "DIR",
        "A/B mode with the reference models taken from a model repository directory.",
        path=True,
    ),
    Option(
        "--triton-perf-compare-windows",
        "compare_windows",
        parsers.positive_int,
        10,
        "N",
        "Windows per arm when comparing or saving (significance needs at least 5).",
    ),
    Option(
        "--triton-perf-compare-budget-s",
        "compare_budget_s",
        parsers.non_negative_float,
        60.0,
        "SECONDS",
        "A/B mode (paired): measure pairs of blocks until every gated metric is decided, for "
        "at most this long per measurement; 0 measures --triton-perf-compare-windows pairs "
        "and decides once (the fixed design).",
    ),
    Option(
        "--triton-perf-ab-method",
        "ab_method",
        parsers.ab_method,
        "paired",
        "paired|mann-whitney",
        "A/B analysis: paired (log-ratios of neighbouring blocks, sequential, stops when "
        "decided) or mann-whitney (the arms' pooled windows, fixed length).",
    ),
    Option(
        "--triton-perf-ab-epochs",
        "ab_epochs",
        parsers.positive_int,
        3,
        "N",
        "A/B mode (paired): load epochs before the first decision. Both arms are loaded "
        "anew for every epoch, and the change is estimated across "
        "epochs, so the arms' own offset counts as noise, not as a change. 1: one load "
        "(the offset is not modelled).",
    ),
    Option(
        "--triton-perf-ab-pin",
        "ab_pin",
        parsers.on_off,
        True,
        "on|off",
        "A/B mode: pin both arms' backend processes (Python models' stubs) instance by "
        "instance to the same CPUs after every load, so that where the scheduler puts them "
        "is no difference between the arms (a server the plugin started on this machine).",
    ),
    Option(
        "--triton-perf-ab-confirm",
        "ab_confirm",
        parsers.on_off,
        False,
        "on|off",
        "Ignored (kept so that existing command lines run): load epochs "
        "(--triton-perf-ab-epochs) replace the confirming comparison.",
    ),
    Option(
        "--triton-perf-block-s",
        "block_s",
        parsers.positive_float,
        0.5,
        "SECONDS",
        "A/B mode (paired): length of one block of one arm; short blocks give more pairs in "
        "the same time.",
    ),
    Option(
        "--triton-perf-alpha",
        "alpha",
        parsers.probability,
        0.01,
        "ALPHA",
        "Significance level of the one-sided tests that flag a regression or an improvement "
        "(a false alarm at no change: at most alpha per side).",
    ),
    Option(
        "--triton-perf-pass-alpha",
        "pass_alpha",
        parsers.probability,
        0.05,
        "ALPHA",
        "Level of the equivalence (pass) decisions: a change of the smallest size that counts "
        "passes with probability at most this (0.05: a 90% interval inside the margin, the "
        "bioequivalence convention).",
    ),
    Option(
        "--triton-perf-min-effect",
        "min_effect",
        parsers.effects,
        None,
        "SPEC",
        "Smallest change that counts as a regression, e.g. p50=5%,p99=10%,throughput=5% "
        "(off disables a metric).",
        shown=_gate_defaults("effect"),
    ),
    Option(
        "--triton-perf-floor",
        "floor",
        parsers.floors,
        None,
        "SPEC",
        "Absolute latency change below which nothing regresses, e.g. p50=0.2ms,p99=0.5ms.",
        shown=_gate_defaults("floor"),
    ),
    Option(
        "--triton-perf-sla-mode",
        "sla_mode",
        parsers.sla_mode,
        "point",
        "point|strict",
        "point: the measured value decides an SLA bound; strict: a bound inside the 95% "
        "interval (marginal) fails too.",
    ),
    Option(
        "--triton-perf-inconclusive",
        "inconclusive",
        parsers.policy,
        "warn",
        "pass|warn|fail",
        "What an inconclusive comparison (too noisy, or unable to see the minimum effect) "
        "does: pass lists it in the summary only; warn also in the Markdown summary and as "
        "a GitHub Actions warning annotation; fail fails the test.",
    ),
    Option(
        "--triton-perf-no-baseline",
        "no_baseline",
        parsers.policy,
        "warn",
        "pass|warn|fail",
        "What a compared measurement without a baseline does (history: nothing stored for "
        "this hardware key in the baseline directory; A/B: the model is not in the "
        "reference): pass lists it in the summary only; warn also as a warning line, in the "
        "Markdown summary and as a GitHub Actions warning annotation; fail fails the test "
        "(for CI, where a missing baseline is a mistake).",
    ),
    Option(
        "--triton-perf-yaml-pattern",
        "yaml_pattern",
        parsers.file_patterns,
        ("triton-perf*.yaml",),
        "GLOB",
        "YAML suites: file names collected as suites of performance tests (glob patterns, "
        "separated by commas or spaces).",
        shown="triton-perf*.yaml",
    ),
    Option(
        "--triton-perf-columns",
        "columns",
        parsers.columns,
        None,
        "COLS",
        "Columns of the terminal table, comma-separated, from: "
        + ", ".join(parsers.COLUMNS)
        + " (memory = gpu_memory,cpu_memory; server_queue = queue).",
        shown="test,model,workload,p50,p99,throughput,errors,sla,baseline; -v adds memory",
    ),
    Option(
        "--triton-perf-sort",
        "sort",
        parsers.sort_column,
        None,
        "COL",
        "Sort the terminal table by a column (ascending; -COL descending, e.g. -p99).",
        shown="none, the order the tests ran",
    ),
    Option(
        "--triton-perf-json",
        "json",
        parsers.non_empty_text,
        None,
        "PATH",
        "Write every measurement with windows, verdicts and environment as JSON.",
        path=True,
    ),
    Option(
        "--triton-perf-junit",
        "junit",
        parsers.non_empty_text,
        None,
        "PATH",
        "Write a JUnit XML file of perf checks (one testcase per measurement and metric).",
        path=True,
    ),
    Option(
        "--triton-perf-markdown",
        "markdown",
        parsers.non_empty_text,
        None,
        "PATH",
        "Write a Markdown summary (also appended to $GITHUB_STEP_SUMMARY when set).",
        path=True,
    ),
    Option(
        "--triton-perf-csv",
        "csv",
        parsers.non_empty_text,
        None,
        "PATH",
        "Write one CSV row per measurement (figures, verdicts, extra_info).",
        path=True,
    ),
    Option(
        "--triton-perf-benchmark-json",
        "benchmark_json",
        parsers.non_empty_text,
        None,
        "DIR",
        "Write github-action-benchmark's input into DIR: customSmallerIsBetter.json "
        "(latencies, memory) and customBiggerIsBetter.json (throughput, capacity), one file "
        "per 'tool' of the action.",
        path=True,
    ),
    Option(
        "--triton-perf-plots",
        "plots",
        parsers.non_empty_text,
        None,
        "DIR",
        "Write PNG plots (needs the 'plots' extra: matplotlib).",
        path=True,
    ),
)

BY_DEST: dict[str, Option] = {opt.dest: opt for opt in OPTIONS}


def default(dest: str) -> Any:
    """The default of the option whose settings field is ``dest``."""
    return BY_DEST[dest].default
