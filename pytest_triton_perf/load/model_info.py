"""Triton's control endpoints the load generator reads (metadata, config, stats), through
the one JSON-over-HTTP helper of ``server.http``; outside the timed loop only.

A KServe V2 server other than Triton (MLServer) serves the metadata without the model
configuration: the model is then measured from its metadata alone (see
:mod:`pytest_triton_perf.server.protocol`)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from pytest_triton_perf.errors import ModelNotReadyError
from pytest_triton_perf.load.model_spec import ModelSpec
from pytest_triton_perf.server import http
from pytest_triton_perf.server.http import HttpStatusError
from pytest_triton_perf.server.protocol import MODEL_CONFIGURATION, ServerInfo, read_server_info
from pytest_triton_perf.urls import base_url

DEFAULT_TIMEOUT_S = 10.0


def request_json(
    http_url: str,
    path: str,
    *,
    method: str = "GET",
    body: Any = None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> Any:
    """JSON document of ``path`` on the server at ``http_url``; HttpStatusError for an error
    status. OSError (ProbeError: refused, reset, timed out) propagates: the caller decides
    whether the server died."""
    return http.request_json(base_url(http_url) + path, method=method, body=body, timeout=timeout)


def model_path(model: str, version: str | None) -> str:
    """``/v2/models/<m>[/versions/<v>]``, quoted."""
    path = f"/v2/models/{quote(model, safe='')}"
    if version:
        path += f"/versions/{quote(version, safe='')}"
    return path


def _available(http_url: str) -> str:
    try:
        index = request_json(http_url, "/v2/repository/index", method="POST", body={})
        names = sorted({str(m.get("name")) for m in index or [] if m.get("state") == "READY"})
        return ", ".join(names) or "(none ready)"
    except (OSError, HttpStatusError, ValueError):
        return "(unknown: repository index not readable)"


def fetch_model_spec(
    http_url: str, model: str, version: str | None = None, *, server: ServerInfo | None = None
) -> ModelSpec:
    """Metadata and configuration of a ready model, as a ModelSpec.

    ``server``: what the server declares (read here when not given). Where it has no model
    configuration extension, the spec is the metadata's alone (``configured`` False).
    Raises ModelNotReadyError naming the model and the models that are ready.
    """
    path = model_path(model, version)
    label = f"model '{model}'" + (f" version {version}" if version else "")
    try:
        ready = request_json(http_url, path + "/ready")
        del ready
    except HttpStatusError as e:
        detail = f": {e.message}" if e.message.strip() else ""
        raise ModelNotReadyError(
            f"{label} is not ready on the server at {http_url} (HTTP {e.status}{detail});"
            f" ready models: {_available(http_url)}"
        ) from None
    try:
        metadata = request_json(http_url, path)
    except HttpStatusError as e:
        raise ModelNotReadyError(
            f"{label}: metadata not available at {http_url} (GET {path}: HTTP {e.status}:"
            f" {e.message}); ready models: {_available(http_url)}"
        ) from None
    if server is None:
        server = read_server_info(base_url(http_url))
    if not server.has(MODEL_CONFIGURATION):
        return ModelSpec.from_metadata(metadata, None, version)
    try:
        config = request_json(http_url, path + "/config")
    except HttpStatusError as e:
        if server.extensions is None and e.status == 404:
            # A server that declares no extensions and has no such route: not Triton.
            return ModelSpec.from_metadata(metadata, None, version)
        raise ModelNotReadyError(
            f"{label}: model configuration not available at {http_url} (GET {path}/config:"
            f" HTTP {e.status}: {e.message}), though {server.label} declares the"
            f" model_configuration extension; ready models: {_available(http_url)}"
        ) from None
    return ModelSpec.from_metadata(metadata, config, version)


def fetch_stats(http_url: str, model: str, version: str | None = None) -> Any:
    """``GET /v2/models/<m>[/versions/<v>]/stats`` as JSON."""
    return request_json(http_url, model_path(model, version) + "/stats")
