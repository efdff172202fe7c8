"""The one JSON-over-HTTP helper for Triton's control plane (urllib, no dependency).

The load generator has its own fast clients; these are for control-plane calls where
clarity beats speed: identity, health, model state, metadata, configuration, statistics,
metrics. Two styles over one :func:`request`: ``get_json``/``post_json`` return the status
and leave it to the caller, :func:`request_json` raises :class:`HttpStatusError` for an
error status. A server that cannot be reached raises :class:`ProbeError`, an ``OSError``
(``ConnectionError``), so callers that treat any socket error as "the server may be gone"
see it too.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


class ProbeError(ConnectionError):
    """The server could not be reached at all (refused, reset, timed out)."""


class HttpStatusError(Exception):
    """Triton answered with a non-2xx status; ``message`` is its error text."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


def request(
    url: str, *, method: str = "GET", body: Any = None, timeout: float = 5.0
) -> tuple[int, bytes]:
    """Send one request; return (status, body). Non-2xx statuses are returned, not raised."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise ProbeError(f"{method} {url}: {reason}") from e


def get_json(url: str, *, timeout: float = 5.0) -> tuple[int, Any]:
    """GET ``url`` and decode JSON (None when the body is empty or not JSON)."""
    status, raw = request(url, timeout=timeout)
    return status, _decode(raw)


def post_json(url: str, body: Any = None, *, timeout: float = 30.0) -> tuple[int, Any]:
    """POST ``body`` as JSON to ``url`` and decode the JSON answer."""
    status, raw = request(
        url, method="POST", body=body if body is not None else {}, timeout=timeout
    )
    return status, _decode(raw)


def request_json(url: str, *, method: str = "GET", body: Any = None, timeout: float = 10.0) -> Any:
    """The JSON document at ``url`` (None for an empty body); HttpStatusError for an error
    status, ProbeError when the server cannot be reached."""
    status, raw = request(url, method=method, body=body, timeout=timeout)
    if not 200 <= status < 300:
        raise HttpStatusError(status, error_text(_decode(raw)))
    return json.loads(raw) if raw else None


def get_text(url: str, *, timeout: float = 2.0) -> str:
    """The text at ``url`` (a Prometheus endpoint); HttpStatusError, ProbeError as above."""
    status, raw = request(url, timeout=timeout)
    if not 200 <= status < 300:
        raise HttpStatusError(status, raw.decode("utf-8", "replace"))
    return raw.decode("utf-8", "replace")


def _decode(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def error_text(payload: Any) -> str:
    """The human part of an error body (Triton's ``{"error": "..."}``, or ``{"detail":
    "..."}`` of a FastAPI server such as MLServer) or the raw text."""
    if isinstance(payload, dict) and "error" in payload:
        return str(payload["error"])
    if isinstance(payload, dict) and isinstance(payload.get("detail"), str):
        return str(payload["detail"])
    return str(payload)
