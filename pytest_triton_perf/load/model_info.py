"""Small synchronous HTTP/JSON calls to Triton's control endpoints (metadata, config, stats).

Used outside the timed loop only, so urllib is good enough and adds no dependency.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote

from pytest_triton_perf.errors import MeasurementError, ModelNotReadyError
from pytest_triton_perf.load.model_spec import ModelSpec

DEFAULT_TIMEOUT_S = 10.0


def split_url(url: str) -> tuple[str, int]:
    """``host`` and ``port`` of ``host:port`` or ``http://host:port[/]``."""
    rest = url.split("://", 1)[1] if "://" in url else url
    rest = rest.split("/", 1)[0]
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        raise MeasurementError(
            f"cannot read host:port from URL {url!r}; expected e.g. 127.0.0.1:8000"
        )
    return host.strip("[]"), int(port)


def base_url(url: str) -> str:
    """``http://host:port`` for a URL given as ``host:port`` or with a scheme."""
    if "://" in url:
        return url.rstrip("/")
    return "http://" + url.rstrip("/")


class HttpStatusError(Exception):
    """Triton answered with a non-2xx status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


def request_json(
    http_url: str,
    path: str,
    *,
    method: str = "GET",
    body: Any = None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> Any:
    """JSON document of ``path`` on the server; HttpStatusError for an error status.

    OSError (connection refused, reset, timeout) propagates: the caller decides whether the
    server died.
    """
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base_url(http_url) + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as e:
        text = e.read().decode("utf-8", "replace")
        try:
            message = str(json.loads(text).get("error", text))
        except (ValueError, AttributeError):
            message = text
        raise HttpStatusError(e.code, message) from None
    except urllib.error.URLError as e:
        reason = e.reason
        if isinstance(reason, OSError):
            raise reason from e
        raise OSError(str(reason)) from e
    return json.loads(raw) if raw else None


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


def fetch_model_spec(http_url: str, model: str, version: str | None = None) -> ModelSpec:
    """Metadata and configuration of a ready model, as a ModelSpec.

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
        config = request_json(http_url, path + "/config")
    except HttpStatusError as e:
        raise ModelNotReadyError(
            f"{label}: metadata not available at {http_url}: {e.message}; ready models:"
            f" {_available(http_url)}"
        ) from None
    return ModelSpec.from_metadata(metadata, config, version)


def fetch_stats(http_url: str, model: str, version: str | None = None) -> Any:
    """``GET /v2/models/<m>[/versions/<v>]/stats`` as JSON."""
    return request_json(http_url, model_path(model, version) + "/stats")
