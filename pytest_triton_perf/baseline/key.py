"""The hardware/software key baselines are stored under, and the revision data beside it.

Keyed (a mismatch means "no baseline for this hardware", never a silent comparison): GPU
model and count, MIG profile, driver and CUDA versions, the CPU model when there is no GPU,
the Triton version. Recorded, not keyed: the model config hash and the git commit, because a
pull request that changes a config must still find its baseline.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import socket
import subprocess
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any


def cpu_model() -> str:
    """The CPU model name (``/proc/cpuinfo``), or the platform's processor string."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


@lru_cache(maxsize=8)
def gpu_facts(devices: tuple[str, ...] | None = None) -> dict[str, Any]:
    """GPU model, count, MIG mode, driver and CUDA versions through NVML; {} without GPU.

    ``devices`` restricts the facts to the GPUs a server was given (``--gpus=device=0``
    on an 8-GPU runner is a one-GPU baseline).
    """
    try:
        import pynvml
    except ImportError:
        return {}
    try:
        pynvml.nvmlInit()
    except Exception:  # NVML raises its own error types; none of them is fatal here
        return {}
    try:
        indices = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            uuid = pynvml.nvmlDeviceGetUUID(pynvml.nvmlDeviceGetHandleByIndex(i))
            uuid = uuid.decode() if isinstance(uuid, bytes) else str(uuid)
            if devices is None or str(i) in devices or uuid in devices:
                indices.append(i)
        count = len(indices)
        if count == 0:
            return {}
        names, mig = [], []
        for i in indices:
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(handle)
            names.append(name.decode() if isinstance(name, bytes) else str(name))
            with contextlib.suppress(Exception):
                current, _ = pynvml.nvmlDeviceGetMigMode(handle)
                if current:
                    mig.append(i)
        driver = pynvml.nvmlSystemGetDriverVersion()
        cuda = pynvml.nvmlSystemGetCudaDriverVersion()
        return {
            "gpu_name": ",".join(sorted(set(names))),
            "gpu_count": count,
            "mig": ",".join(map(str, mig)) or None,
            "driver": driver.decode() if isinstance(driver, bytes) else str(driver),
            "cuda": f"{cuda // 1000}.{(cuda % 1000) // 10}",
        }
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


def environment_key(
    triton_version: str, gpu_devices: tuple[str, ...] | None = None
) -> dict[str, Any]:
    """The key: what must match for two measurements to be comparable."""
    key: dict[str, Any] = {"triton": triton_version}
    gpu = gpu_facts(gpu_devices)
    if gpu:
        key.update(gpu)
    else:
        key.update({"gpu_count": 0, "cpu": cpu_model(), "cpu_count": os.cpu_count()})
    return key


def soft_environment() -> dict[str, Any]:
    """Recorded beside the key, never compared: they vary without changing performance."""
    return {
        "host": socket.gethostname(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
    }


#: CI systems' variables that name one run and its attempt: (system, run, attempt).
CI_RUNS = (
    ("github", "GITHUB_RUN_ID", "GITHUB_RUN_ATTEMPT"),
    ("gitlab", "CI_PIPELINE_ID", "CI_JOB_ID"),
    ("buildkite", "BUILDKITE_BUILD_ID", "BUILDKITE_RETRY_COUNT"),
    ("jenkins", "BUILD_TAG", None),
)


def session_id(run_uid: str, environ: Mapping[str, str] | None = None) -> str:
    """Who measured: one identity per pytest session, shared by its xdist workers.

    ``TRITON_PERF_SESSION`` where set; else the CI run and its attempt (GitHub Actions,
    GitLab CI, Buildkite, Jenkins); else the host's boot id and ``run_uid`` (the pytest
    session's: xdist's ``testrunuid``, the same on every worker). History mode treats the
    runs of one session as one unit and confirms a shift only from another session.
    """
    env = os.environ if environ is None else environ
    if env.get("TRITON_PERF_SESSION"):
        return env["TRITON_PERF_SESSION"]
    for system, run, attempt in CI_RUNS:
        if env.get(run):
            return f"{system}-{env[run]}" + (f"-{env.get(attempt)}" if attempt else "")
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
    except OSError:
        boot = socket.gethostname()
    return f"local-{boot}-{run_uid[:12]}"


def git_commit(directory: Path) -> str | None:
    """The commit checked out at ``directory`` (with ``+dirty`` for local changes)."""
    try:
        sha = subprocess.run(
            ["git", "-C", str(directory), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(directory), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("+dirty" if dirty else "")


def config_hash(config: Any) -> str:
    """Hash of a model configuration as the server reports it (canonical JSON)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
