"""Model variants: a model's files under a derived name with a configuration of their own,
loaded into a running server through Triton's repository API. The one way A/B arms
(``<model>__ref``, ``<model>__cand``), search candidates (``<model>__cfg<N>``) and footprint
copies (``<model>__fp``) enter a server.

A server the plugin started reads a variant repository of its own
(``TritonServer.variant_repository``): a variant is written there (files linked where the
file system allows, else copied; the edited ``config.pbtxt`` beside them) and loaded by
name, which is how Triton finds an ensemble's composing models. A server the plugin did not
start gets the files in the load request (tritonclient's ``load_model(name, config=...,
files=...)``), if it allows model control. Either way the variant never needs to be inside
the user's model repository.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_triton_perf.errors import ArgumentError

if TYPE_CHECKING:
    import tritonclient.http
    from tritonclient.grpc import model_config_pb2

#: An A/B reference's copy, ``<model>__ref``.
REFERENCE_SUFFIX = "__ref"
#: The candidate's copy, loaded beside the reference so that both arms are set up alike.
CANDIDATE_SUFFIX = "__cand"
#: A configuration search's candidate, ``<model>__cfg<N>`` (``__cfg0``: the committed one).
CONFIG_SUFFIX = "__cfg"
#: A footprint's fresh copy of a model the server already serves.
FOOTPRINT_SUFFIX = "__fp"


def reference_name(model: str, load: int = 1) -> str:
    """The derived name the reference copy of ``model`` is served under: ``<model>__ref``,
    and ``<model>__ref<load>`` from its second load on (A/B mode's load epochs load fresh
    copies under new names while the old ones unload)."""
    return f"{model}{REFERENCE_SUFFIX}{load if load > 1 else ''}"


def candidate_name(model: str, load: int = 1) -> str:
    """The derived name the candidate's copy of ``model`` is served under in A/B mode
    (``<model>__cand``, then ``<model>__cand<load>``)."""
    return f"{model}{CANDIDATE_SUFFIX}{load if load > 1 else ''}"


def config_name(model: str, index: int) -> str:
    """The name candidate ``index`` of a configuration search of ``model`` is loaded under."""
    return f"{model}{CONFIG_SUFFIX}{index}"


def footprint_name(model: str) -> str:
    """The name a footprint's fresh copy of ``model`` is loaded under."""
    return f"{model}{FOOTPRINT_SUFFIX}"


_ARM = re.compile(rf"(.+)(?:{REFERENCE_SUFFIX}|{CANDIDATE_SUFFIX})(?:[2-9]|[1-9][0-9]+)?")


def base_name(name: str) -> str:
    """``name`` without the suffix of an A/B arm (``scale__ref`` and ``scale__cand3`` ->
    ``scale``)."""
    found = _ARM.fullmatch(name)
    return found.group(1) if found else name


def model_directory(
    server: object, model: str, model_repository: Any = None, *, who: str, then: str
) -> Path:
    """The directory of ``model``'s files: in ``model_repository`` when given, else in the
    server's own model repositories (local and container launchers). ArgumentError otherwise,
    starting with ``who`` (``search of model 'm'``) and ending with ``then`` (what to pass,
    after ``Pass model_repository=DIR``)."""
    if model_repository is not None:
        src = Path(os.fspath(model_repository)) / model
        if not (src / "config.pbtxt").is_file():
            raise ArgumentError(
                f"{who}: model_repository={os.fspath(model_repository)!r}: no "
                f"{model}/config.pbtxt there; give the model repository that holds model "
                f"'{model}'."
            )
        return src
    repositories = getattr(server, "model_repositories", ())
    for repo in repositories:
        if (Path(repo) / model / "config.pbtxt").is_file():
            return Path(repo) / model
    looked = (
        f"the server's model repositories ({', '.join(str(r) for r in repositories)}) "
        f"hold no {model}/config.pbtxt"
        if repositories
        else "the server has no local model repository (a remote server)"
    )
    raise ArgumentError(
        f"{who}: its files are not at hand: {looked}. Pass model_repository=DIR{then}."
    )


def config_json(config: model_config_pb2.ModelConfig, name: str) -> str:
    """``config`` as the repository API takes it (JSON), under the model name ``name``."""
    from google.protobuf import json_format
    from tritonclient.grpc import model_config_pb2

    named = model_config_pb2.ModelConfig()
    named.CopyFrom(config)
    named.name = name
    return str(json_format.MessageToJson(named))


def model_files(src: Path) -> dict[str, bytes]:
    """The files of the model directory ``src`` but its ``config.pbtxt``, keyed as the
    repository API takes them (``file:1/model.py``); compiled caches left out."""
    config = src / "config.pbtxt"
    return {
        f"file:{f.relative_to(src).as_posix()}": f.read_bytes()
        for f in sorted(src.rglob("*"))
        if f.is_file() and f != config and "__pycache__" not in f.parts
    }


def load_model_copy(
    client: tritonclient.http.InferenceServerClient, src: Path, name: str, config: str
) -> None:
    """Load the model directory ``src`` under ``name`` with ``config`` (JSON, see
    :func:`config_json`), its files in the request: how a variant enters a server that has
    no variant repository (:meth:`Variants.load` chooses). Raises tritonclient's
    InferenceServerException (Triton's message) or OSError."""
    client.load_model(name, config=config, files=model_files(src))


def loaded_models(client: tritonclient.http.InferenceServerClient) -> set[str]:
    """Names the repository index shows as loaded, loading or still unloading."""
    return {
        str(m.get("name"))
        for m in client.get_model_repository_index()
        if m.get("state") in ("READY", "UNLOADING", "LOADING")
    }


def unload_models(
    client: tritonclient.http.InferenceServerClient, names: Sequence[str], timeout_s: float
) -> set[str]:
    """Unload ``names`` and wait until the index no longer shows them (Triton unloads in
    the background, once requests in flight are done); returns those still there after
    ``timeout_s``. Best effort: a name the server does not know is no error."""
    for name in names:
        with contextlib.suppress(Exception):
            client.unload_model(name)
    return wait_unloaded(client, names, timeout_s)


def wait_unloaded(
    client: tritonclient.http.InferenceServerClient, names: Sequence[str], timeout_s: float
) -> set[str]:
    """Wait until the index no longer shows ``names`` (asked to unload before); returns
    those still there after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = loaded_models(client) & set(names)
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.1)


def load_error(message: str) -> str:
    """Triton's load error on one line: a Python model's traceback ("At: ...") left out."""
    head = message.split("\n\nAt:")[0]
    return " ".join(head.split()).rstrip(" ;")


class Variants:
    """Variants loaded into one server, and unloaded again: the repository API's client
    (opened on first use), the files written into the server's variant repository, the
    names loaded. :meth:`close` unloads what is still loaded."""

    def __init__(self, server: Any):
        self.server = server
        #: A load compiles or initialises the model: allow as long as a server start.
        self.timeout_s = max(float(getattr(server, "startup_timeout_s", 120.0)), 30.0)
        #: Names :meth:`load` was asked for and not unloaded since (a failed load may leave
        #: a model half there: it is unloaded all the same).
        self.loaded: set[str] = set()
        self._written: set[str] = set()  # directories of the variant repository
        self._client: tritonclient.http.InferenceServerClient | None = None

    @property
    def repository(self) -> Path | None:
        """The server's variant repository (None: a server the plugin did not start)."""
        found = getattr(self.server, "variant_repository", None)
        return None if found is None else Path(found)

    def client(self) -> tritonclient.http.InferenceServerClient:
        """The HTTP client of the repository API."""
        if self._client is None:
            import tritonclient.http

            self._client = tritonclient.http.InferenceServerClient(
                str(self.server.http_url), network_timeout=self.timeout_s
            )
        return self._client

    def load_together(
        self, items: Sequence[tuple[Path, str, model_config_pb2.ModelConfig]]
    ) -> None:
        """:meth:`load` each ``(src, name, config)`` at the same time, each request from a
        thread and a client of its own (Triton loads models in parallel: two Python
        backend stubs start in the time of one). Raises the first error once every load
        has ended."""
        import threading

        import tritonclient.http

        errors: list[BaseException] = []

        def one(src: Path, name: str, config: model_config_pb2.ModelConfig) -> None:
            client = tritonclient.http.InferenceServerClient(
                str(self.server.http_url), network_timeout=self.timeout_s
            )
            try:
                self.load(src, name, config, client=client)
            except BaseException as e:  # re-raised in the caller's thread
                errors.append(e)
            finally:
                client.close()

        threads = [threading.Thread(target=one, args=item) for item in items]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]

    def load(
        self,
        src: Path,
        name: str,
        config: model_config_pb2.ModelConfig,
        client: tritonclient.http.InferenceServerClient | None = None,
    ) -> None:
        """Load the model directory ``src``'s files under ``name`` with ``config`` (its name
        set to ``name`` on a copy): written into the server's variant repository and loaded
        by name there, or with the files in the request where the server has none. Raises
        tritonclient's InferenceServerException (Triton's message) or OSError. ``client``:
        another client than :meth:`client`'s (one per thread)."""
        self.loaded.add(name)
        variants = self.repository
        client = client or self.client()
        if variants is None:
            load_model_copy(client, src, name, config_json(config, name))
            return
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2

        named = model_config_pb2.ModelConfig()
        named.CopyFrom(config)
        named.name = name
        dst = variants / name
        self._written.add(name)
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(
            src,
            dst,
            ignore=shutil.ignore_patterns("__pycache__", "config.pbtxt"),
            copy_function=_link_or_copy,
        )
        (dst / "config.pbtxt").write_text(text_format.MessageToString(named))
        client.load_model(name)

    def unload(self, names: Sequence[str], *, wait: bool = True) -> set[str]:
        """Unload ``names`` in this order (best effort: a name the server does not know is
        no error) and remove the files written for them; with ``wait``, wait until the index
        no longer shows them and return those still there after :attr:`timeout_s`. Either
        way they leave :attr:`loaded`: Triton finishes an unload it was asked for by itself,
        and :meth:`close` does not wait for it again."""
        if wait:
            left = unload_models(self.client(), names, self.timeout_s)
        else:
            for name in names:
                with contextlib.suppress(Exception):
                    self.client().unload_model(name)
            left = set()
        variants = self.repository
        for name in names:
            if name in self._written and variants is not None:
                shutil.rmtree(variants / name, ignore_errors=True)
            self._written.discard(name)
        self.loaded -= set(names)
        return left

    def wait_unloaded(self, names: Sequence[str]) -> set[str]:
        """Wait until ``names`` (unloaded before without waiting) are gone from the index;
        returns those still there after :attr:`timeout_s`."""
        return wait_unloaded(self.client(), names, self.timeout_s)

    def close(self) -> None:
        """Unload what is still loaded (errors, interrupts; best effort) and close the
        client."""
        try:
            if self.loaded:
                with contextlib.suppress(Exception):
                    self.unload(sorted(self.loaded))
        finally:
            if self._client is not None:
                with contextlib.suppress(Exception):
                    self._client.close()
                self._client = None


def _link_or_copy(src: str, dst: str) -> object:
    """A hard link where the file system allows (a model's weights are not copied), else
    a copy."""
    try:
        os.link(src, dst)
    except OSError:
        return shutil.copy2(src, dst)
    return dst
