"""A/B mode's reference models: the model repository as it is at a git revision (or in a
directory), loaded beside the candidate in the same server under derived names.

Loading goes through Triton's repository API with the model's files in the request
(tritonclient's ``load_model(name, config=..., files=...)``), so it works the same for the
local launcher and for a remote server that allows model control, and the reference never
needs to be inside a server's repository.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_triton_perf.errors import ConfigError, TritonPerfError
from pytest_triton_perf.server.base import TritonServer

if TYPE_CHECKING:
    import tritonclient.http

SUFFIX = "__ref"


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


def reference_name(model: str) -> str:
    """The derived name the reference copy of ``model`` is served under."""
    return f"{model}{SUFFIX}"


def _config_json(config_path: Path, name: str) -> str:
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2

    try:
        config = text_format.Parse(config_path.read_text(), model_config_pb2.ModelConfig())
    except text_format.ParseError as e:
        raise TritonPerfError(f"reference config {config_path} does not parse: {e}") from None
    config.name = name
    return str(json_format.MessageToJson(config))


class ReferenceModels:
    """Reference copies loaded into one server; unloaded again by :meth:`unload_all`."""

    def __init__(self, server: TritonServer, repository: Path, *, origin: str):
        self.server = server
        self.repository = repository
        self.origin = origin  # "git ref X" or "directory Y", for messages
        self.loaded: dict[str, str] = {}
        self._client: tritonclient.http.InferenceServerClient | None = None

    def _http(self) -> tritonclient.http.InferenceServerClient:
        if self._client is None:
            import tritonclient.http

            # A load compiles or initialises the model: allow as long as a server start.
            self._client = tritonclient.http.InferenceServerClient(
                self.server.http_url,
                network_timeout=max(self.server.startup_timeout_s, 30.0),
            )
        return self._client

    def ensure(self, model: str) -> str | None:
        """Load the reference of ``model`` once; None when the reference has no such model."""
        from tritonclient.utils import InferenceServerException

        if model in self.loaded:
            return self.loaded[model]
        src = self.repository / model
        config = src / "config.pbtxt"
        if not src.is_dir():
            return None
        if not config.is_file():
            raise TritonPerfError(
                f"A/B mode: the reference of model '{model}' ({self.origin}) has no "
                f"config.pbtxt; A/B mode needs an explicit model configuration."
            )
        name = reference_name(model)
        files = {
            f"file:{f.relative_to(src).as_posix()}": f.read_bytes()
            for f in sorted(src.rglob("*"))
            if f.is_file() and f != config and "__pycache__" not in f.parts
        }
        try:
            self._http().load_model(name, config=_config_json(config, name), files=files)
        except (InferenceServerException, OSError) as e:
            raise TritonPerfError(
                f"A/B mode: loading the reference of model '{model}' ({self.origin}) as "
                f"'{name}' failed: {e}. The server must allow model control "
                f"(--model-control-mode=explicit)."
            ) from None
        self.loaded[model] = name
        return name

    def unload_all(self) -> None:
        """Unload every reference this object loaded (best effort: the session is ending)."""
        for name in self.loaded.values():
            with contextlib.suppress(Exception):
                self._http().unload_model(name)
        self.loaded.clear()
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None


def remove_export(root: Path | None) -> None:
    """Remove a temporary export made by :func:`export_git_ref`."""
    if root is not None:
        shutil.rmtree(root, ignore_errors=True)
