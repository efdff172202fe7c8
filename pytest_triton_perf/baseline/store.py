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

import contextlib
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pytest_triton_perf.errors import BaselineError
from pytest_triton_perf.files import atomic_write_text

SCHEMA_VERSION = 1
MAX_RUNS = 20
#: Files of a key directory that are not baselines: what the key stands for, the A/A
#: calibration (``triton-perf calibrate``) and the shifts waiting for a second session.
NOT_BASELINES = frozenset({"environment.json", "calibration.json", "suspected.json"})
LOCK_TIMEOUT_S = 60.0


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


def same_commit(stored: str | None, given: str) -> bool:
    """Whether a stored run's commit (``+dirty`` for local changes) is ``given``, either
    being a prefix of the other (``git`` abbreviates)."""
    if not stored or not given:
        return False
    stored = stored.removesuffix("+dirty")
    return stored.startswith(given) or given.startswith(stored)


def read_json(path: Path, what: str = "baseline file") -> Any:
    """Parse ``path``; errors name the file (a ``what``), the line/column and the cause."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise BaselineError(f"cannot read {what} {path}: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BaselineError(
            f"{what} {path} is not valid UTF-8 at byte {e.start}: {e.reason}. "
            f"It was left untouched; restore it from version control or delete it."
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise BaselineError(
            f"{what} {path} is not valid JSON at line {e.lineno} column {e.colno} "
            f"(char {e.pos}): {e.msg}. It was left untouched; restore it from version "
            f"control or delete it."
        ) from None


def _dumps(document: Any) -> str:
    """A baseline file's text: sorted keys, two-space indent, so that diffs stay small."""
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def merge_runs(*run_lists: list[dict[str, Any]], max_runs: int = MAX_RUNS) -> list[dict[str, Any]]:
    """The union of several copies of one measurement's runs: each run once (two runs are
    the same when their JSON is), oldest first by date (a tie keeps the order given), the
    newest ``max_runs`` kept. Shards of one CI run each carry the committed runs plus their
    own new ones: merged, nothing is lost and nothing counted twice."""
    unique: dict[str, dict[str, Any]] = {}
    for runs in run_lists:
        for run in runs:
            unique.setdefault(_dumps(run), run)
    ordered = sorted(unique.values(), key=lambda run: str(run.get("date") or ""))
    return ordered[-max_runs:]


def lock_path(directory: Path) -> str:
    """A lock file outside the committed baseline directory, shared by every process of
    this machine that writes there."""
    digest = hashlib.sha1(str(directory.resolve()).encode()).hexdigest()[:16]
    return str(Path(tempfile.gettempdir()) / f"triton-perf-baseline-{digest}.lock")


@contextlib.contextmanager
def locked(path: Path, what: str = "baseline file") -> Iterator[None]:
    """Hold the lock of ``path``'s directory (created if need be) while it is rewritten; a
    lock held elsewhere too long, or a write that fails, is a BaselineError naming the file.
    Shared by every process of this machine that writes there."""
    from filelock import FileLock, Timeout

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(lock_path(path.parent), timeout=LOCK_TIMEOUT_S):
            yield
    except Timeout:
        raise BaselineError(
            f"could not lock {path.parent} within {LOCK_TIMEOUT_S:g} s: another run is "
            f"saving baselines there."
        ) from None
    except OSError as e:
        raise BaselineError(
            f"cannot write {what} {path}: {e.strerror or e}. The previous file, if any, is intact."
        ) from None


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

    def key_directories(self) -> list[str]:
        """The key directories stored here (any directory holding a JSON file)."""
        if not self.root.is_dir():
            return []
        return sorted(d.name for d in self.root.iterdir() if d.is_dir() and any(d.glob("*.json")))

    def missing(
        self, key: Mapping[str, Any], test: str, label: str, root: Path | None = None
    ) -> dict[str, Any]:
        """Where a baseline of one measurement was looked for and why none was found, for
        the reports: ``dir`` (the baseline directory, relative to ``root`` where it is
        inside), ``key_dir`` (the key directory searched), ``stored_keys`` (the key
        directories the baseline directory does hold), ``elsewhere`` (those holding this
        measurement) and ``note`` (all that in words)."""
        shown = str(self.root)
        if root is not None:
            with contextlib.suppress(ValueError):
                shown = str(self.root.resolve().relative_to(root.resolve())) or "."
        wanted = key_directory(key)
        stored = self.key_directories()
        elsewhere = self.other_keys_with(test, label)
        if not self.root.is_dir():
            why = "the directory does not exist"
        elif not stored:
            why = "it holds no baselines"
        elif wanted not in stored:
            why = f"no such key directory; stored there: {', '.join(stored)}"
        elif self.path(key, test, label).is_file():
            why = f"{measurement_file(test, label)} holds no accepted runs"
        else:
            why = f"no {measurement_file(test, label)} in it"
        note = f"searched {shown} for key {wanted}: {why}"
        if elsewhere:
            note = f"stored for: {', '.join(elsewhere)}; {note}"
        return {
            "dir": shown,
            "key_dir": wanted,
            "stored_keys": stored,
            "elsewhere": elsewhere,
            "note": note,
        }

    def iter_files(self) -> Iterator[Path]:
        """Every baseline file (not the environment descriptions)."""
        if not self.root.is_dir():
            return
        for d in sorted(p for p in self.root.iterdir() if p.is_dir()):
            for f in sorted(d.glob("*.json")):
                if f.name not in NOT_BASELINES:
                    yield f

    def documents(self, key: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        """Every readable baseline file stored under ``key`` (the machine-level estimates
        of history mode); a damaged file is skipped here, its own test names it."""
        d = self.root / key_directory(key)
        if not d.is_dir():
            return
        for f in sorted(d.glob("*.json")):
            if f.name not in NOT_BASELINES:
                with contextlib.suppress(BaselineError):
                    yield self.read_file(f)

    @staticmethod
    def accepted(doc: Mapping[str, Any]) -> list[str]:
        """The commits at which a change was accepted on purpose, oldest first."""
        return [str(a["commit"]) for a in doc.get("accepted") or [] if a.get("commit")]

    def accept(self, path: Path, commit: str, note: str = "") -> dict[str, Any]:
        """Record in the baseline file ``path`` that the change at ``commit`` (a stored
        run's commit, or a prefix of one) is accepted: history compares later runs with the
        level from that commit on. BaselineError names the commits stored when it is not
        one of them."""
        import datetime as dt

        with locked(path):
            doc = self.read_file(path)
            commits = [str(r.get("git_commit")) for r in doc["runs"] if r.get("git_commit")]
            plain = [c.removesuffix("+dirty") for c in commits]
            match = [c for c in plain if same_commit(c, commit)]
            if not match:
                shown = ", ".join(dict.fromkeys(c[:10] for c in plain)) or "none"
                raise BaselineError(
                    f"commit {commit!r} is not among the runs stored in {path} "
                    f"(stored commits, oldest first: {shown})"
                )
            entry = {
                "commit": match[0],
                "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                **({"note": note} if note else {}),
            }
            doc["accepted"] = [*(doc.get("accepted") or []), entry]
            atomic_write_text(path, _dumps(doc))
        return entry

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
        path = self.path(key, test, label)
        with locked(path):
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
                **({"accepted": doc["accepted"]} if doc and doc.get("accepted") else {}),
            }
            atomic_write_text(path, _dumps(document))
            env_path = path.parent / "environment.json"
            if not env_path.exists():
                described = {"key": dict(key), "first": dict(environment)}
                atomic_write_text(env_path, _dumps(described))
        return path

    def merge(self, source: str | os.PathLike[str], max_runs: int = MAX_RUNS) -> tuple[int, int]:
        """Merge the baseline directory ``source`` (a shard's copy) into this one: for each
        of its files, the union of both files' runs (:func:`merge_runs`); a key directory's
        ``environment.json`` is copied when this one has none. Returns (files changed, runs
        added). A corrupt file on either side raises BaselineError naming it; nothing of
        this store is left half-written."""
        theirs = BaselineStore(source)
        changed = added = 0
        for src in theirs.iter_files():
            doc = theirs.read_file(src)
            path = self.root / src.parent.name / src.name
            with locked(path):
                mine = self.read_file(path) if path.exists() else None
                old = list(mine["runs"]) if mine else []
                runs = merge_runs(old, list(doc["runs"]), max_runs=max_runs)
                env_src = src.parent / "environment.json"
                env_path = path.parent / "environment.json"
                if env_src.is_file() and not env_path.exists():
                    atomic_write_text(env_path, env_src.read_text(encoding="utf-8"))
                accepted = merge_runs(
                    list((mine or {}).get("accepted") or []), list(doc.get("accepted") or [])
                )
                if mine is not None and runs == old and accepted == (mine.get("accepted") or []):
                    continue
                head = mine or doc
                document = {
                    "schema_version": SCHEMA_VERSION,
                    **{k: head.get(k) for k in ("test", "label", "key", "workload")},
                    "runs": runs,
                    **({"accepted": accepted} if accepted else {}),
                }
                atomic_write_text(path, _dumps(document))
            changed += 1
            known = {_dumps(r) for r in old}
            added += sum(_dumps(r) not in known for r in runs)
        return changed, added
