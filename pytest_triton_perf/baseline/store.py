"""The baseline store: human-readable, diff-friendly JSON meant to be committed.

Layout::

    <root>/<key directory>/environment.json       what the key stands for
    <root>/<key directory>/<measurement>.json     accepted runs of one test measurement

The key directory is named by the hardware/software key (GPU model and count, MIG profile,
driver and CUDA versions, CPU model when there is no GPU, Triton version): a baseline from
another machine is never compared silently. Writes are atomic (``files.atomic_write_text``:
temporary file, fsync, rename) under a file lock; a corrupt or unknown-schema file is an
error naming the file and the position and is never overwritten.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pytest_triton_perf.errors import TritonPerfError
from pytest_triton_perf.files import atomic_write_text

SCHEMA_VERSION = 1
MAX_RUNS = 20
LOCK_TIMEOUT_S = 60.0


class BaselineError(TritonPerfError):
    """A baseline file cannot be read or written; names the file and the cause."""


def slug(text: str, limit: int = 80) -> str:
    """A file-name-safe rendering of ``text``, with a hash suffix when shortened."""
    s = re.sub(r"[^A-Za-z0-9._=-]+", "_", text).strip("_")
    if len(s) > limit:
        digest = hashlib.sha1(text.encode()).hexdigest()[:8]
        s = f"{s[: limit - 9]}_{digest}"
    return s or "_"


def key_directory(key: Mapping[str, Any]) -> str:
    """``<readable part>-<hash of the whole key>``, e.g. ``cpu-AMD_EPYC_triton-2.51.0-1a2b3c4d``."""
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:8]
    if key.get("gpu_count"):
        hw = f"{key.get('gpu_count')}x{key.get('gpu_name', 'gpu')}"
        if key.get("mig"):
            hw += f"-mig-{key['mig']}"
    else:
        hw = f"cpu-{key.get('cpu', 'unknown')}"
    return slug(f"{hw}_triton-{key.get('triton', '?')}", 60) + f"-{digest}"


def measurement_file(test: str, label: str) -> str:
    """File name of one test measurement (test node id + workload label)."""
    return slug(f"{test}__{label}", 150) + ".json"


def read_json(path: Path) -> Any:
    """Parse ``path``; errors name the file, the line/column and the cause."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise BaselineError(f"cannot read baseline file {path}: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BaselineError(
            f"baseline file {path} is not valid UTF-8 at byte {e.start}: {e.reason}. "
            f"It was left untouched; restore it from version control or delete it."
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise BaselineError(
            f"baseline file {path} is not valid JSON at line {e.lineno} column {e.colno} "
            f"(char {e.pos}): {e.msg}. It was left untouched; restore it from version "
            f"control or delete it."
        ) from None


def _dumps(document: Any) -> str:
    """A baseline file's text: sorted keys, two-space indent, so that diffs stay small."""
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def _lock_path(directory: Path) -> str:
    """A lock file outside the committed baseline directory, shared by every process of
    this machine that writes there."""
    digest = hashlib.sha1(str(directory.resolve()).encode()).hexdigest()[:16]
    return str(Path(tempfile.gettempdir()) / f"triton-perf-baseline-{digest}.lock")


class BaselineStore:
    """Baselines under ``root`` (``.triton-perf/`` at the rootdir by default)."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)

    def path(self, key: Mapping[str, Any], test: str, label: str) -> Path:
        """Where the baseline of one test measurement under ``key`` lives."""
        return self.root / key_directory(key) / measurement_file(test, label)

    def read_file(self, path: Path) -> dict[str, Any]:
        """A baseline file, validated; BaselineError names the file and what is wrong."""
        doc = read_json(path)
        if not isinstance(doc, dict):
            raise BaselineError(f"baseline file {path}: expected a JSON object at the top.")
        version = doc.get("schema_version")
        if version != SCHEMA_VERSION:
            raise BaselineError(
                f"baseline file {path} has schema_version {version!r}; this version of "
                f"pytest-triton-perf reads schema_version {SCHEMA_VERSION}. It was left "
                f"untouched; upgrade the plugin or re-record with --triton-perf-save."
            )
        if not isinstance(doc.get("runs"), list):
            raise BaselineError(f"baseline file {path}: 'runs' is missing or not a list.")
        return doc

    def load(self, key: Mapping[str, Any], test: str, label: str) -> dict[str, Any] | None:
        """The stored baseline, or None when there is none for this key."""
        path = self.path(key, test, label)
        if not path.exists():
            return None
        return self.read_file(path)

    def other_keys_with(self, test: str, label: str) -> list[str]:
        """Key directories holding this measurement (for "no baseline for this hardware")."""
        name = measurement_file(test, label)
        if not self.root.is_dir():
            return []
        return sorted(d.name for d in self.root.iterdir() if (d / name).is_file())

    def iter_files(self) -> Iterator[Path]:
        """Every baseline file (not the environment descriptions)."""
        if not self.root.is_dir():
            return
        for d in sorted(p for p in self.root.iterdir() if p.is_dir()):
            for f in sorted(d.glob("*.json")):
                if f.name != "environment.json":
                    yield f

    def save(
        self,
        key: Mapping[str, Any],
        test: str,
        label: str,
        run: Mapping[str, Any],
        *,
        workload: Mapping[str, Any],
        environment: Mapping[str, Any],
        max_runs: int = MAX_RUNS,
    ) -> Path:
        """Append ``run`` to the measurement's accepted runs (keeping the last ``max_runs``).

        Under a file lock so concurrent savers (parallel CI jobs on one checkout) never lose
        each other's writes; an existing corrupt file raises and stays as it is.
        """
        from filelock import FileLock, Timeout

        path = self.path(key, test, label)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            lock = FileLock(_lock_path(path.parent), timeout=LOCK_TIMEOUT_S)
            with lock:
                doc = self.read_file(path) if path.exists() else None
                runs = list(doc["runs"]) if doc else []
                runs.append(dict(run))
                document = {
                    "schema_version": SCHEMA_VERSION,
                    "test": test,
                    "label": label,
                    "key": dict(key),
                    "workload": dict(workload),
                    "runs": runs[-max_runs:],
                }
                atomic_write_text(path, _dumps(document))
                env_path = path.parent / "environment.json"
                if not env_path.exists():
                    described = {"key": dict(key), "first": dict(environment)}
                    atomic_write_text(env_path, _dumps(described))
        except Timeout:
            raise BaselineError(
                f"could not lock {path.parent} within {LOCK_TIMEOUT_S:g} s: another run is "
                f"saving baselines there."
            ) from None
        except OSError as e:
            raise BaselineError(
                f"cannot write baseline file {path}: {e.strerror or e}. The previous file, if "
                f"any, is intact."
            ) from None
        return path
