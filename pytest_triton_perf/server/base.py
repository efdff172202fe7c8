"""The one server handle every launcher returns, and the readiness logic they share."""

from __future__ import annotations

import abc
import contextlib
import difflib
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from pytest_triton_perf.errors import (
    ModelNotReadyError,
    ServerDiedError,
    ServerStartError,
    StaleServerError,
    TritonPerfError,
)
from pytest_triton_perf.options import STARTUP_TIMEOUT_S
from pytest_triton_perf.server.http import ProbeError, error_text, get_json, post_json
from pytest_triton_perf.server.protocol import MODEL_REPOSITORY, ServerInfo, server_info

LOG_TAIL_LINES = 30
#: Model names a "not in the repository" message lists at most.
MODELS_SHOWN = 20
ERROR_LINES = 10
#: After a SIGTERM, Triton checks its live models once a second and exits when none is left:
#: a Python model that unloads in 1.2 s held every stop for about 1 s more. stop() unloads
#: the models first (:meth:`TritonServer.unload_before_stop`) and waits for them at most this
#: long; the exit then takes about 0.5 s.
UNLOAD_BEFORE_STOP_S = 3.0
#: Model states of the repository index that hold Triton's exit.
_LIVE = frozenset({"READY", "UNLOADING"})
# glog error lines (E1121 19:38:26...) and plain-text failures such as an unknown flag.
_ERROR_LINE = re.compile(r"^E\d{4} |unrecognized option|error|failed", re.IGNORECASE)
# Triton's model lifecycle lines: a load starts, then ends in success or failure.
_LOADING = re.compile(r'"loading: (?P<name>.+):(?P<version>\d+)"')
_LOAD_DONE = re.compile(r"(?:successfully loaded|failed to load) '(?P<name>[^']+)'")
# A config.pbtxt that does not parse: protobuf logs the parse error on one line, and Triton
# names the model directory on the next ("Poll failed for model directory 'm': ...").
_POLL_FAILED = re.compile(r"Poll failed for model directory '(?P<name>[^']+)': (?P<why>[^\"]+)")
_PARSE_ERROR = re.compile(r"Error parsing text-format .*")
# The glog prefix (E1121 19:38:26.123 1234 file.cc:12]) and quotes around the message.
_GLOG_PREFIX = re.compile(r"^[IWEF]\d{4} [\d:.]+\s+\d+ [^\]]+\]\s*")


def checked_repositories(paths: Sequence[str | os.PathLike[str]]) -> tuple[Path, ...]:
    """The model repositories as absolute paths; ServerStartError when one is missing."""
    if not paths:
        raise ServerStartError("no model repository given; pass at least one directory.")
    repos = tuple(Path(p).resolve() for p in paths)
    for repo in repos:
        if not repo.is_dir():
            raise ServerStartError(
                f"model repository {repo} does not exist or is not a directory. Set "
                f"--triton-model-repository (or ini triton_model_repository) to the "
                f"directory holding <model>/config.pbtxt."
            )
    return repos


class TritonServer(abc.ABC):
    """A handle on a running Triton server, whichever way it was started.

    Usable as a context manager outside pytest::

        with LocalTritonServer(["models"]) as server:
            print(server.http_url, server.version, server.models)

    Attributes are filled by :meth:`start`: ``http_url`` and ``grpc_url`` are ``host:port``
    as tritonclient takes them, ``metrics_url`` is a full URL or None.
    """

    kind: str = "abstract"

    def __init__(
        self, *, models: Sequence[str] | None = None, startup_timeout_s: float = STARTUP_TIMEOUT_S
    ):
        self.requested_models: tuple[str, ...] | None = (
            tuple(models) if models is not None else None
        )
        self.startup_timeout_s = startup_timeout_s
        self.http_url = ""
        self.grpc_url = ""
        self.metrics_url: str | None = None
        self.version = ""
        self.server_id = ""
        # The HTTP endpoint once it answered with this server's own id (a port clash may
        # leave another server at the URL picked): the only one stop() sends requests to.
        self._owned_url = ""
        # The server's own account of itself (GET /v2): name, version, the protocol
        # extensions it declares (a KServe V2 server other than Triton declares none).
        self.server_info = ServerInfo()
        self.models: tuple[str, ...] = ()
        self.failed_models: dict[str, str] = {}
        self.log_path: Path | None = None
        # GPUs the server was given, as NVML indices or UUIDs; None: every GPU of the host.
        self.gpu_devices: tuple[str, ...] | None = None
        # A directory of this machine the server reads as a model repository of its own
        # (empty at start, removed with the server): the plugin writes model variants there
        # that the server must find by name, e.g. the composing models of an A/B arm of an
        # ensemble. None for a server the plugin did not start.
        self.variant_repository: Path | None = None

    # -- lifecycle -------------------------------------------------------------------------

    @abc.abstractmethod
    def start(self) -> TritonServer:
        """Start (or connect to) the server and wait until it and its models are ready."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop what :meth:`start` started. Safe to call twice and after a failed start."""

    @abc.abstractmethod
    def check_alive(self) -> None:
        """Raise :class:`ServerDiedError` if the server is gone; cheap enough to poll."""

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def describe(self) -> str:
        """One line for the pytest header and failure messages."""
        if self.server_info.kserve_only:
            return f"{self.version} (KServe V2, {self.kind}) at {self.http_url}"
        return f"Triton {self.version or '?'} ({self.kind}) at {self.http_url}"

    # -- queries ---------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://host:port`` of the HTTP endpoint."""
        return f"http://{self.http_url}"

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines of the server log, or an empty string when there is none."""
        self._sync_log()
        if self.log_path is None or not self.log_path.exists():
            return ""
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def repository_index(self) -> list[dict[str, Any]]:
        """Triton's model repository index: name, version, state and reason of each model."""
        status, payload = post_json(f"{self.base_url}/v2/repository/index", {}, timeout=10.0)
        if status != 200 or not isinstance(payload, list):
            raise ServerStartError(
                f"{self.describe()}: repository index failed (HTTP {status}): {error_text(payload)}"
            )
        return payload

    def model_ready(self, model: str, version: str | None = None) -> bool:
        """True when ``model`` (``version``, or Triton's default policy) is ready."""
        path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/ready"
        try:
            status, _ = get_json(self.base_url + path, timeout=5.0)
        except ProbeError:
            return False
        return status == 200

    def require_model(self, model: str, version: str | None = None) -> None:
        """Raise :class:`ModelNotReadyError` naming the reason when ``model`` cannot be used."""
        if self.model_ready(model, version):
            return
        self.check_alive()
        what = f"model '{model}'" + (f" version {version}" if version else "")
        if model in self.failed_models:
            raise ModelNotReadyError(
                f"{what} failed to load on {self.describe()}: {self.failed_models[model]}"
                + self._log_excerpt()
            )
        available = ", ".join(sorted(self.models)) or "(none)"
        try:
            states = self._model_states()
        except (TritonPerfError, ProbeError):  # a server without the repository extension
            states = {m: ("READY", "") for m in self.models}
        if model not in states and model not in self.repository_directories():
            raise ModelNotReadyError(self._not_in_repository_text(model, states))
        if states.get(model, ("", ""))[1] == "unloaded":
            asked = (
                f" (--triton-models={','.join(self.requested_models)})"
                if self.requested_models is not None
                else ""
            )
            raise ModelNotReadyError(
                f"{what} is in the repository of {self.describe()} but was not loaded"
                f"{asked}. Ready models: {available}."
            )
        raise ModelNotReadyError(
            f"{what} is not ready on {self.describe()}. Ready models: {available}."
        )

    def repository_directories(self) -> list[str]:
        """The model directories of the repositories this server was started on (none for
        a server started elsewhere, whose repository only its index shows)."""
        names: set[str] = set()
        for repo in getattr(self, "model_repositories", ()):
            with contextlib.suppress(OSError):
                names.update(
                    p.name for p in Path(repo).iterdir() if p.is_dir() and p.name[0] != "."
                )
        return sorted(names)

    def _not_in_repository_text(self, model: str, index: Iterable[str]) -> str:
        """``model 'X' is not in the repository <path>; closest: a, b``, with the models
        there and where to look next."""
        known = sorted(set(index) | set(self.repository_directories()))
        repos = [str(p) for p in getattr(self, "model_repositories", ())]
        where = ", ".join(repos) if repos else f"of {self.describe()}"
        close = difflib.get_close_matches(model, known, n=3, cutoff=0.6)
        text = f"model '{model}' is not in the repository {where}"
        if close:
            text += f"; closest: {', '.join(close)}"
        shown = ", ".join(known[:MODELS_SHOWN]) or "(none)"
        if len(known) > MODELS_SHOWN:
            shown += f", ... ({len(known)} in all)"
        fix = (
            "point --triton-model-repository at the repository that holds it"
            if repos
            else "point --triton-url at the server that serves it"
        )
        return f"{text}. Models there: {shown}. Check the model name, or {fix}."

    # -- shared readiness ------------------------------------------------------------------

    def _wait_until_ready(self, *, alive: Callable[[], None], expected_id: str | None) -> None:
        """Poll identity, liveness and model states until ready or ``startup_timeout_s``.

        ``alive`` raises when the process we started has exited, so a dead server fails at
        once with its exit status instead of after the timeout.
        """
        deadline = time.monotonic() + self.startup_timeout_s
        last_problem = "no answer yet"
        while True:
            alive()
            try:
                status, meta = get_json(f"{self.base_url}/v2", timeout=2.0)
                if status == 200 and isinstance(meta, dict):
                    self._check_identity(meta, expected_id)
                    live, _ = get_json(f"{self.base_url}/v2/health/live", timeout=2.0)
                    if live == 200:
                        if expected_id is not None:
                            self._owned_url = self.base_url
                        break
                    last_problem = f"GET /v2/health/live answered HTTP {live}"
                else:
                    last_problem = f"GET /v2 answered HTTP {status}"
            except ProbeError as e:
                last_problem = str(e)
            if time.monotonic() > deadline:
                raise ServerStartError(self._not_live_text(last_problem))
            time.sleep(0.2)
        self._collect_models(deadline, alive)

    def unload_before_stop(self) -> None:
        """Unload every ready model of a server started here and wait until none is left,
        for at most :data:`UNLOAD_BEFORE_STOP_S` (see there). Best effort, once per start: a
        server that does not answer, or a model that does not unload in time, is stopped by
        the signals that follow as before."""
        url, self._owned_url = self._owned_url, ""
        if not url:
            return
        deadline = time.monotonic() + UNLOAD_BEFORE_STOP_S
        with contextlib.suppress(ProbeError, ValueError, TypeError, KeyError):
            _, index = post_json(f"{url}/v2/repository/index", {}, timeout=1.0)
            names = {m["name"] for m in index or () if m.get("state") == "READY"}
            for name in sorted(names):
                post_json(f"{url}/v2/repository/models/{name}/unload", {}, timeout=1.0)
            while names and time.monotonic() < deadline:
                time.sleep(0.05)
                _, index = post_json(f"{url}/v2/repository/index", {}, timeout=1.0)
                names &= {m["name"] for m in index or () if m.get("state") in _LIVE}

    def _not_live_text(self, last_problem: str) -> str:
        """Why the server is not live after ``startup_timeout_s`` (a launcher's own: the
        models still loading, the server log)."""
        return (
            f"Triton did not become live within {self.startup_timeout_s:g} s "
            f"(probed {self.base_url}/v2 and /v2/health/live every 0.2 s; "
            f"last: {last_problem}). Triton opens its endpoints only after the "
            f"startup models are loaded.{self._loading_text()} Raise the timeout with "
            f"--triton-startup-timeout if model loading is slow." + self._log_excerpt()
        )

    def _check_identity(self, meta: dict[str, Any], expected_id: str | None) -> None:
        self.version = str(meta.get("version", ""))
        self.server_info = server_info(meta)
        if self.server_info.kserve_only and self.server_info.name:
            # Another KServe V2 server: its name goes with its version wherever the version
            # is recorded (the baseline key), so it is never taken for a Triton release.
            self.version = f"{self.server_info.name}-{self.version}"
        if expected_id is not None and meta.get("name") != expected_id:
            raise StaleServerError(
                f"another server answers at {self.base_url}: its id is {meta.get('name')!r}, "
                f"the one started here has id {expected_id!r}. A stale Triton holds the port; "
                f"stop it, or let the plugin pick free ports."
            )

    def _model_states(self) -> dict[str, tuple[str, str]]:
        """name -> (state, reason) from the repository index; a READY version wins.

        A KServe V2 server without a repository index (no Triton model_repository
        extension declared, and none answering) gives the requested models' readiness."""
        try:
            index = self.repository_index()
        except ServerStartError:
            if self.server_info.has(MODEL_REPOSITORY):
                raise
            return {
                m: ("READY", "")
                if self.model_ready(m)
                else ("UNAVAILABLE", f"not ready (GET /v2/models/{m}/ready)")
                for m in self.requested_models or ()
            }
        states: dict[str, tuple[str, str]] = {}
        for entry in index:
            name = str(entry.get("name"))
            if states.get(name, ("",))[0] != "READY":
                states[name] = (str(entry.get("state", "")), str(entry.get("reason", "")))
        return states

    def _collect_models(self, deadline: float, alive: Callable[[], None]) -> None:
        """Fill ``models`` and ``failed_models``, waiting for models still loading."""
        while True:
            alive()
            states = self._model_states()
            wanted = self.requested_models if self.requested_models is not None else states
            still_loading = any(states.get(m, ("",))[0] == "LOADING" for m in wanted)
            if not still_loading or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self.models = tuple(sorted(m for m, (s, _) in states.items() if s == "READY"))
        # Models in the repository that were never asked for are "UNAVAILABLE: unloaded".
        self.failed_models = {
            m: r or s for m, (s, r) in states.items() if s not in ("READY", "") and r != "unloaded"
        }
        if self.requested_models is None and self.log_path is not None:
            # An owned server asked to load every model: one listed without any state never
            # got as far as loading (its config.pbtxt does not parse); the log says why.
            for m, (s, _) in states.items():
                if s == "":
                    self.failed_models[m] = self._stateless_reason(m)
        for model in self.requested_models or ():
            state, reason = states.get(model, ("", ""))
            if state == "READY":
                continue
            if model not in states:
                raise ModelNotReadyError(self._not_in_repository_text(model, states))
            if state == "LOADING":
                raise ModelNotReadyError(
                    f"model '{model}' was still loading after {self.startup_timeout_s:g} s "
                    f"on {self.describe()}.{self._loading_text([model])} Raise "
                    f"--triton-startup-timeout if it is just slow." + self._log_excerpt()
                )
            if state == "":
                raise ModelNotReadyError(
                    f"model '{model}' failed to load on {self.describe()}: "
                    f"{self._stateless_reason(model)}" + self._log_excerpt()
                )
            raise ModelNotReadyError(
                f"model '{model}' failed to load on {self.describe()} (state {state}): "
                f"{reason or 'no reason given'}" + self._log_excerpt()
            )

    # -- what the log says about models ----------------------------------------------------

    def _log_lines(self) -> list[str]:
        self._sync_log()
        if self.log_path is None or not self.log_path.exists():
            return []
        return self.log_path.read_text(errors="replace").splitlines()

    def _stateless_reason(self, model: str) -> str:
        """Why ``model`` has no state in the index: the log's parse error, if it has one."""
        lines = self._log_lines()
        for i, line in enumerate(lines):
            match = _POLL_FAILED.search(line)
            if match is None or match["name"] != model:
                continue
            why = match["why"].strip()
            # The parse error itself (with line:column) is logged just before.
            for earlier in reversed(lines[max(0, i - 3) : i]):
                parse = _PARSE_ERROR.search(earlier)
                if parse:
                    return f"its config.pbtxt does not parse: {parse.group(0).strip()} ({why})"
            return why
        return (
            "the repository index lists it without a state (Triton could not read its "
            "configuration); see the server log"
        )

    def loading_models(self) -> dict[str, str | None]:
        """Models whose load the log shows started but not ended -> the last error line the
        log has about each (None when there is none), e.g. a Python stub that failed."""
        loading: dict[str, str | None] = {}
        for line in self._log_lines():
            started = _LOADING.search(line)
            if started:
                loading[started["name"]] = None
                continue
            done = _LOAD_DONE.search(line)
            if done:
                loading.pop(done["name"], None)
                continue
            if _ERROR_LINE.search(line):
                for name in loading:
                    # The stub names the model by its directory (.../<model>/1/model.py).
                    if f"/{name}/" in line or f"'{name}'" in line:
                        loading[name] = _GLOG_PREFIX.sub("", line).strip().strip('"').strip()
        return loading

    def _loading_text(self, only: Sequence[str] | None = None) -> str:
        """`` Still loading per the server log: m (log: <error>).`` or an empty string."""
        loading = self.loading_models()
        names = [m for m in loading if only is None or m in only]
        if not names:
            return ""
        parts = [m + (f" (log: {loading[m]})" if loading[m] else "") for m in names]
        return f" Still loading per the server log: {'; '.join(parts)}."

    def _log_excerpt(self) -> str:
        """Error lines from anywhere in the log, then its tail.

        Triton prints its whole usage text after an unknown flag, and a long model-load
        trace after a failure: the line that matters is often far above the tail.
        """
        self._sync_log()
        if self.log_path is None or not self.log_path.exists():
            return ""
        lines = self.log_path.read_text(errors="replace").splitlines()
        tail = lines[-LOG_TAIL_LINES:]
        earlier = lines[: len(lines) - len(tail)]
        errors = [ln for ln in earlier if _ERROR_LINE.search(ln)][-ERROR_LINES:]
        where = f" ({self.log_path})"
        text = ""
        if errors:
            text += f"\n--- errors in the server log{where} ---\n" + "\n".join(errors)
        if tail:
            text += f"\n--- server log tail{where} ---\n" + "\n".join(tail)
        return text

    def _sync_log(self) -> None:
        """Bring ``log_path`` up to date before it is read.

        A process writes its log file itself (nothing to do); a container's log lives in the
        engine and is copied here.
        """
        return

    def _died(self, returncode: int, detail: str = "") -> ServerDiedError:
        how = f"was killed by signal {-returncode}" if returncode < 0 else f"exited {returncode}"
        return ServerDiedError(f"Triton {how}{detail} ({self.describe()})." + self._log_excerpt())
