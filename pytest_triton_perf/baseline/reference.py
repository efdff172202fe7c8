"""A/B mode's reference models: the model repository as it is at a git revision (or in a
directory), loaded beside the candidate in the same server under derived names.

The copies are model variants (:mod:`pytest_triton_perf.server.variants`): written into the
server's variant repository, or sent in the load request to a remote server that allows
model control. Either way the reference never needs to be inside the user's model
repository. This module keeps what is A/B mode's own: the git export, the pairing of the
arms and the copies of an ensemble's composing models.
"""

from __future__ import annotations

import contextlib
import io
import random
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_triton_perf.errors import ConfigError, TritonPerfError
from pytest_triton_perf.server.base import TritonServer
from pytest_triton_perf.server.protocol import MODEL_CONFIGURATION, MODEL_REPOSITORY
from pytest_triton_perf.server.variants import (
    Variants,
    base_name,
    candidate_name,
    config_json,
    load_model_copy,
    reference_name,
    unload_models,
)

if TYPE_CHECKING:
    import psutil
    from tritonclient.grpc import model_config_pb2

#: ``base_name``, ``config_json``, ``load_model_copy`` and ``unload_models`` live in
#: ``server.variants``; they are re-exported for the modules that import them from here.
__all__ = [
    "ReferenceModels",
    "base_name",
    "config_json",
    "export_git_ref",
    "load_model_copy",
    "remove_export",
    "unload_models",
]


def export_git_ref(model_repository: Path, ref: str) -> tuple[Path, Path]:
    """Export ``model_repository`` as it is at git revision ``ref`` into a temporary
    directory; returns (the exported repository, the temporary root to remove later)."""
    repo = model_repository.resolve()

    def git(*args: str, cwd: Path = repo) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, check=False)

    top = git("rev-parse", "--show-toplevel")
    if top.returncode != 0:
        raise ConfigError(
            f"--triton-perf-baseline-ref={ref}: the model repository {repo} is not inside a "
            f"git work tree; use --triton-perf-baseline-repo=DIR to name the reference."
        )
    toplevel = Path(top.stdout.decode().strip())
    if git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").returncode != 0:
        raise ConfigError(
            f"--triton-perf-baseline-ref={ref}: no such commit in {toplevel}. Give a branch, "
            f"tag or commit (in CI, fetch enough history, e.g. actions/checkout fetch-depth: 0)."
        )
    rel = repo.relative_to(toplevel.resolve()).as_posix()
    # Pathspecs are relative to the working directory: archive from the top level.
    archive = git("archive", "--format=tar", ref, "--", rel, cwd=toplevel)
    if archive.returncode != 0:
        raise ConfigError(
            f"--triton-perf-baseline-ref={ref}: the model repository '{rel}' does not exist "
            f"at {ref}: {archive.stderr.decode(errors='replace').strip()}"
        )
    root = Path(tempfile.mkdtemp(prefix="triton-perf-ref-"))
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        if hasattr(tarfile, "data_filter"):  # refuse odd members where Python can
            tar.extractall(root, filter="data")
        else:  # pragma: no cover - Python < 3.10.12
            tar.extractall(root)
    return root / rel, root


def _parse_config(config_path: Path) -> model_config_pb2.ModelConfig:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    try:
        return text_format.Parse(config_path.read_text(), model_config_pb2.ModelConfig())
    except text_format.ParseError as e:
        raise TritonPerfError(f"reference config {config_path} does not parse: {e}") from None


@dataclass(frozen=True)
class Reloaded:
    """What a refresh of A/B arms did: how both arms were loaded, and the names they are
    served under now (None: the same as before)."""

    how: str
    names: tuple[str, str] | None = None


@dataclass(frozen=True)
class _Side:
    """One arm's side of an ensemble's steps: a step's key in ReferenceModels.loaded (its
    derived name on the candidate's side) and the directory of its files (None: not there)."""

    key: Callable[[str], str]
    find: Callable[[str], Path | None]


class ReferenceModels:
    """Reference copies (and the candidates' copies) loaded into one server; unloaded again
    by :meth:`unload_all`.

    **Symmetric arms.** The model the server loaded at start-up and a copy uploaded later
    differ in more than their files: load order, their place in memory, the backend
    processes' age, warm-up. So that the comparison measures the revision and nothing
    else, :meth:`arms` loads *both* arms the same way, one right after the other, through
    the repository API: the reference as ``<model>__ref`` and the candidate's files from the
    server's own model repository as ``<model>__cand``, each with its own configuration
    (same instance settings when the revision did not change them).
    """

    def __init__(
        self,
        server: TritonServer,
        repository: Path,
        *,
        origin: str,
        candidates: Sequence[Path] = (),
        seed: int | None = None,
        pin: bool = False,
    ):
        self.server = server
        self.repository = repository
        self.origin = origin  # "git ref X" or "directory Y", for messages
        #: The server's own model repositories, where the candidates' files are.
        self.candidates = tuple(candidates)
        self.loaded: dict[str, str] = {}  # model -> derived name, references and copies
        self._arms: set[str] = set()  # models whose arms were asked for
        # An ensemble copy's key -> the keys of the composing-model copies it runs.
        self._steps: dict[str, list[str]] = {}
        #: Why an ensemble arm runs a composing model of the server rather than its own
        #: copy of it (the step is not in that arm's repository), per ensemble key.
        self.step_notes: dict[str, list[str]] = {}
        self._variants = Variants(server)
        self._rng = random.Random(seed)
        #: Pin both arms' backend processes to the same CPU after every load (see :meth:`pin`).
        self.pin_arms = pin
        #: Why the arms could not be pinned (None: pinned, or not asked for).
        self.pin_note: str | None = None
        #: How many times both arms of a model were loaded together (their names' number).
        self._loads: dict[str, int] = {}

    def arms(self, model: str, candidate_first: bool | None = None) -> tuple[str, str, str] | None:
        """Load the reference of ``model`` and a copy of the candidate, one after the other
        (in a random order unless ``candidate_first`` says; a systematic order would make
        part of the arms' offset systematic); returns (reference name, candidate name, a
        note on how the arms were set up), or None when the reference has no such model.
        Where the candidate's files are not at hand (a remote server) the candidate is the
        server's own model, and the note says so."""
        if not (self.repository / model).is_dir():
            return None
        src = self._candidate_dir(model)
        key = candidate_name(model)
        if candidate_first is None:
            candidate_first = self._rng.random() < 0.5
        if candidate_first and src is not None and key not in self.loaded:
            self._load_candidate(model, src)
        reference = self.ensure(model)
        if reference is None:
            return None
        self._arms.add(model)
        if src is None:
            return (
                reference,
                model,
                "arms not symmetric: the candidate is the model the server loaded at start "
                "(its files are not in a local model repository), the reference a copy "
                "loaded later",
            )
        if key not in self.loaded:
            self._load_candidate(model, src)
        note = "both arms loaded alike, as copies, in a random order"
        if self.pin_arms:
            note += "; " + self.pin(model)
        if model in self._steps or key in self._steps:
            note += " (each ensemble arm with its own copies of its composing models)"
        missing = self.step_notes.get(model, []) + self.step_notes.get(key, [])
        if missing:
            note += "; " + "; ".join(missing)
        return reference, self.loaded[key], note

    def _load_candidate(self, model: str, src: Path) -> None:
        key = candidate_name(model)
        self._load(
            src,
            key,
            f"the candidate copy of model '{model}'",
            key=key,
            side=_Side(key=candidate_name, find=self._candidate_dir),
        )
        self.loaded[key] = key

    def _candidate_dir(self, model: str) -> Path | None:
        return next(
            (r / model for r in self.candidates if (r / model / "config.pbtxt").is_file()), None
        )

    def _reference_dir(self, model: str) -> Path | None:
        src = self.repository / model
        return src if (src / "config.pbtxt").is_file() else None

    def reload(self, model: str, candidate_first: bool = False) -> str:
        """Unload both arms of ``model`` and load them again: both at the same time where
        neither is an ensemble, else one after the other (``candidate_first``: the
        candidate's copy first, or its load request first when they load together). Fresh
        instances (new backend processes), so that an offset tied to one incarnation of a
        copy (measured: up to several percent between two identical CPU-bound
        Python-backend copies on a 2-core machine) is drawn anew. A/B mode does this before
        every load epoch after the first. (Loading an unchanged model again is a no-op in
        Triton, hence the unload.) Two plain copies come back under new names
        (``<model>__ref2``, ``<model>__cand2``, ...; :meth:`served`), loaded while the old
        ones unload. Returns how they were loaded."""
        keys = self._with_steps([k for k in (model, candidate_name(model)) if k in self.loaded])
        # A composing-model copy another loaded ensemble copy runs stays.
        others = self._with_steps([k for k in self._steps if k not in keys and k in self.loaded])
        keys = [k for k in keys if k not in others]
        names = [self.loaded[k] for k in keys if k in self.loaded]
        pair = self._plain_pair(model) if model in self._arms else None
        # Two plain copies load anew under new names while the old ones unload: the old
        # processes exit in the time the new ones start (a Python stub's exit took about
        # as long as its start here), and none is left when the blocks begin.
        self._variants.unload(names, wait=pair is None)
        for key in keys:
            self.loaded.pop(key, None)
            self._steps.pop(key, None)
            self.step_notes.pop(key, None)
        if model not in self._arms:
            return "unloaded"
        if pair is not None:
            self._loads[model] = self._loads.get(model, 1) + 1
            self._load_both(model, pair, candidate_first)
            self._variants.wait_unloaded(names)
            if self.pin_arms:
                self.pin(model)
            return "loaded together"
        self.arms(model, candidate_first=candidate_first)
        return "candidate loaded first" if candidate_first else "reference loaded first"

    def pin(self, model: str) -> str:
        """Pin the backend processes of both arms of ``model`` (a Python model's stubs,
        one per instance) instance by instance to the same CPUs: each arm's i-th process
        to the i-th CPU the server may use, counted from the last. Where the scheduler
        puts two copies' processes is part of the offset between them: beside a noisy
        neighbour on 2 cores, pinned arms spread less per pair in three of four
        measurements and no more in the fourth (``benchmarks/noise_floor.py``,
        ``benchmarks/arm_offset.py --pin``, ``benchmarks/gate_quality.py --pin``). Only
        one arm runs at a time (alternating blocks), so the two never compete for a CPU;
        a model's instances keep a CPU each (up to the CPUs there are). Only for a server
        the plugin started on this machine (its processes are this machine's); returns
        what was done, for the notes."""
        import psutil

        pid = getattr(self.server, "pid", None)
        if not isinstance(pid, int):
            self.pin_note = "not pinned: the server's processes are not this machine's"
            return self.pin_note
        names = [self.loaded[k] for k in (model, candidate_name(model)) if k in self.loaded]
        used: set[int] = set()
        try:
            cpus = sorted(psutil.Process(pid).cpu_affinity() or [0], reverse=True)
            arms = [
                sorted(backend_processes(pid, [name]), key=lambda p: p.create_time())
                for name in names
            ]
            for stubs in arms:
                for i, stub in enumerate(stubs):
                    cpu = cpus[i % len(cpus)]
                    stub.cpu_affinity([cpu])
                    used.add(cpu)
            found = sum(len(stubs) for stubs in arms)
        except (psutil.Error, OSError) as e:
            self.pin_note = f"not pinned: {e}"
            return self.pin_note
        if not found:
            self.pin_note = "not pinned: the arms have no backend process of their own"
            return self.pin_note
        self.pin_note = None
        where = ", ".join(str(c) for c in sorted(used, reverse=True))
        return (
            f"both arms' {found} backend processes pinned instance by instance to the same "
            f"CPU{'s' if len(used) > 1 else ''} {where}"
        )

    def refresher(self, model: str) -> Callable[[bool], Reloaded]:
        """A/B mode's ``refresh`` for ``model``: :meth:`reload` (``candidate_first``), with
        the names the arms are served under afterwards."""

        def again(candidate_first: bool) -> Reloaded:
            how = self.reload(model, candidate_first)
            return Reloaded(how, self.served(model))

        return again

    def served(self, model: str) -> tuple[str, str] | None:
        """The names both arms of ``model`` are served under now (None: not loaded)."""
        ref, cand = self.loaded.get(model), self.loaded.get(candidate_name(model))
        return None if ref is None or cand is None else (ref, cand)

    def _plain_pair(self, model: str) -> list[tuple[Path, model_config_pb2.ModelConfig]] | None:
        """Both arms' (directory, configuration) where neither is an ensemble (its steps
        are loaded first, one by one) and the candidate's files are at hand; else None."""
        ref_src, cand_src = self._reference_dir(model), self._candidate_dir(model)
        if ref_src is None or cand_src is None:
            return None
        configs = [_parse_config(d / "config.pbtxt") for d in (ref_src, cand_src)]
        if any(c.platform == "ensemble" for c in configs):
            return None
        return list(zip((ref_src, cand_src), configs, strict=True))

    def _load_both(
        self,
        model: str,
        pair: list[tuple[Path, model_config_pb2.ModelConfig]],
        candidate_first: bool,
    ) -> None:
        """Load both arms of ``model`` (:meth:`_plain_pair`) at the same time (a symmetric
        start, and half the time of one after the other), under this load's names. Their
        requests start ``candidate_first`` or not: the first backend process to start is
        placed by the scheduler before the other, so that order is drawn too."""
        from tritonclient.utils import InferenceServerException

        load = self._loads.get(model, 1)
        names = (reference_name(model, load), candidate_name(model, load))
        items = [(src, name, config) for (src, config), name in zip(pair, names, strict=True)]
        if candidate_first:
            items.reverse()
        try:
            self._variants.load_together(items)
        except (InferenceServerException, OSError) as e:
            raise TritonPerfError(
                f"A/B mode: loading both arms of model '{model}' ({self.origin}) failed: {e}"
            ) from None
        self.loaded[model], self.loaded[candidate_name(model)] = names

    def _with_steps(self, keys: Sequence[str]) -> list[str]:
        """``keys`` and the keys of the composing-model copies they run, recursively."""
        out: list[str] = []
        todo = list(keys)
        while todo:
            key = todo.pop()
            if key not in out:
                out.append(key)
                todo.extend(self._steps.get(key, []))
        return out

    def ensure(self, model: str) -> str | None:
        """Load the reference of ``model`` once; None when the reference has no such model."""
        if model in self.loaded:
            return self.loaded[model]
        src = self.repository / model
        if not src.is_dir():
            return None
        name = reference_name(model)
        self._load(
            src,
            name,
            f"the reference of model '{model}' ({self.origin})",
            key=model,
            side=_Side(key=lambda step: step, find=self._reference_dir),
        )
        self.loaded[model] = name
        return name

    def _load(
        self,
        src: Path,
        name: str,
        what: str,
        *,
        key: str,
        side: _Side,
    ) -> None:
        """Load the model directory ``src`` under ``name`` as a model variant
        (:meth:`Variants.load`: written into the server's variant repository and loaded by
        name, or with its files in the request where the server has none).

        An ensemble's arm runs copies of its composing models from the same side (the
        reference's steps as they were at the reference, the candidate's as they are now),
        loaded first under the same kind of derived name (``side`` gives a step's key in
        :attr:`loaded` and its directory on that side) and named in the copy's
        ``ensemble_scheduling``: a change in one step is then seen by an A/B comparison of
        the pipeline, and its step located. A step that side does not have runs the
        server's own model, and :attr:`step_notes` says so.
        """
        from tritonclient.utils import InferenceServerException

        missing = self.server.server_info.missing((MODEL_REPOSITORY, MODEL_CONFIGURATION))
        if missing:
            raise TritonPerfError(
                f"A/B mode needs Triton's {' and '.join(missing)} extension(s), to load"
                f" {what} as a copy beside the served model; {self.server.describe()} does"
                " not declare them (a KServe V2 server other than Triton). Gate on this server"
                " in history"
                " mode instead: record baselines with --triton-perf-save, then compare with"
                " --triton-perf-compare."
            )
        config_path = src / "config.pbtxt"
        if not config_path.is_file():
            raise TritonPerfError(
                f"A/B mode: {what} has no config.pbtxt; A/B mode needs an explicit model "
                f"configuration."
            )
        config = _parse_config(config_path)
        if config.platform == "ensemble":
            self._steps[key] = self._step_copies(config, key, what, side)
        try:
            self._variants.load(src, name, config)
        except (InferenceServerException, OSError) as e:
            raise TritonPerfError(
                f"A/B mode: loading {what} as '{name}' failed: {e}. The server must allow "
                f"model control (--model-control-mode=explicit)."
            ) from None

    def _step_copies(
        self,
        config: model_config_pb2.ModelConfig,
        key: str,
        what: str,
        side: _Side,
    ) -> list[str]:
        """Load this arm's copy of each composing model of the ensemble ``config`` (loaded
        as ``key``) and name them in its steps; returns their keys. Triton loads an
        ensemble's composing models from its repositories by name (also when the ensemble
        itself comes with its files in the request), so every copy is written into the
        server's variant repository and loaded from there (:meth:`_load`); a copy loaded
        with its files in the request could not be a step."""
        steps: list[str] = []
        if self._variants.repository is None:
            self.step_notes.setdefault(key, []).append(
                "its steps run the server's own composing models (a server the plugin did "
                "not start has no repository for copies of them)"
            )
            return steps
        for step in config.ensemble_scheduling.step:
            original = step.model_name
            skey = side.key(original)
            if skey not in self.loaded:
                step_src = side.find(original)
                if step_src is None:
                    self.step_notes.setdefault(key, []).append(
                        f"step '{original}' runs the server's own model (it is not in this "
                        f"arm's model repository)"
                    )
                    continue
                derived = skey if skey != original else reference_name(original)
                what_step = f"step '{original}' of {what}"
                self._load(step_src, derived, what_step, key=skey, side=side)
                self.loaded[skey] = derived
            step.model_name = self.loaded[skey]
            steps.append(skey)
        return steps

    def unload_all(self) -> None:
        """Unload every reference this object loaded (best effort: the session is ending);
        ensembles first, then the composing-model copies they ran."""
        order = sorted(self.loaded, key=lambda k: k not in self._steps)
        with contextlib.suppress(Exception):
            self._variants.unload([self.loaded[key] for key in order], wait=False)
        self.loaded.clear()
        self._steps.clear()
        self.step_notes.clear()
        self._variants.close()


def backend_processes(server_pid: int, names: Sequence[str]) -> list[psutil.Process]:
    """The processes of the server ``server_pid`` that serve one of the models ``names`` on
    their own (a Python model's stubs: their command line names the model's files)."""
    import psutil

    return [
        child
        for child in psutil.Process(server_pid).children(recursive=True)
        if any(
            f"/{n}/" in part or part.endswith(f"/{n}") for n in names for part in child.cmdline()
        )
    ]


def remove_export(root: Path | None) -> None:
    """Remove a temporary export made by :func:`export_git_ref`."""
    if root is not None:
        shutil.rmtree(root, ignore_errors=True)
