"""What a KServe V2 server says of itself (``GET /v2``): its name, its version and the
protocol extensions it declares.

Triton speaks the KServe V2 inference protocol and declares extensions beyond it: the model
configuration (``GET /v2/models/<m>/config``), statistics (``.../stats``), the model
repository API with loads of files and configurations, shared memory. Another KServe V2
server (MLServer, KServe's Python runtimes) serves the core alone: health, server and model
metadata, inference. A measurement there runs from the model's metadata, and the figures an
absent extension would give are unavailable, each with the reason this module words.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pytest_triton_perf.server.http import get_json

#: ``GET /v2/models/<m>/config``: batching, sequence batching, ensemble steps, decoupling.
MODEL_CONFIGURATION = "model_configuration"
#: ``GET /v2/models/<m>/stats``: the server-side breakdown and other models' traffic.
STATISTICS = "statistics"
#: Loads and unloads through the repository API, with the files and configuration in the
#: request: A/B mode's copies, footprints, configuration searches.
MODEL_REPOSITORY = "model_repository"
#: Tensors as raw bytes after the JSON header (else as JSON ``"data"`` lists).
BINARY_TENSOR_DATA = "binary_tensor_data"
#: POSIX and CUDA shared-memory regions (``measure(shared_memory=...)``).
SYSTEM_SHARED_MEMORY = "system_shared_memory"
CUDA_SHARED_MEMORY = "cuda_shared_memory"


@dataclass(frozen=True)
class ServerInfo:
    """A server's answer to ``GET /v2``; ``extensions`` None when it gave none readable."""

    name: str = ""
    version: str = ""
    extensions: frozenset[str] | None = None

    @property
    def label(self) -> str:
        """``mlserver 1.7.1``, ``triton 2.51.0``: the server as messages name it."""
        return " ".join(p for p in (self.name, self.version) if p) or "the server"

    def has(self, extension: str) -> bool:
        """Whether the server declares ``extension``; True when it declared nothing
        readable (the figure is then tried, and its own error says what is missing)."""
        return self.extensions is None or extension in self.extensions

    def missing(self, extensions: Iterable[str]) -> list[str]:
        """Those of ``extensions`` the server does not declare, in the given order."""
        return [e for e in extensions if not self.has(e)]

    def lacks(self, extension: str) -> str | None:
        """Why a figure of ``extension`` is unavailable here, or None when it is declared:
        ``mlserver 1.7.1 has no Triton statistics extension; its GET /v2 declares: none``."""
        if self.has(extension):
            return None
        declared = ", ".join(sorted(self.extensions or ())) or "none"
        return f"{self.label} has no Triton {extension} extension; its GET /v2 declares: {declared}"

    @property
    def kserve_only(self) -> bool:
        """True for a KServe V2 server without Triton's model configuration (MLServer)."""
        return not self.has(MODEL_CONFIGURATION)


def read_server_info(base_url: str, *, timeout: float = 5.0) -> ServerInfo:
    """``GET <base_url>/v2`` as a :class:`ServerInfo`; an empty one (every extension assumed)
    when the answer is not a metadata document. ProbeError propagates."""
    status, meta = get_json(f"{base_url}/v2", timeout=timeout)
    if status != 200 or not isinstance(meta, dict):
        return ServerInfo()
    return server_info(meta)


def server_info(meta: dict[str, object]) -> ServerInfo:
    """The :class:`ServerInfo` of a server metadata document (``GET /v2``)."""
    raw = meta.get("extensions")
    extensions = frozenset(str(e) for e in raw) if isinstance(raw, list | tuple) else None
    return ServerInfo(str(meta.get("name") or ""), str(meta.get("version") or ""), extensions)


__all__ = [
    "BINARY_TENSOR_DATA",
    "CUDA_SHARED_MEMORY",
    "MODEL_CONFIGURATION",
    "MODEL_REPOSITORY",
    "STATISTICS",
    "SYSTEM_SHARED_MEMORY",
    "ServerInfo",
    "read_server_info",
    "server_info",
]
