"""Small, dependency-free HTTP calls for probing a Triton server (urllib).

The load generator has its own fast clients; these are for control-plane calls where
clarity beats speed: identity, health, model state, statistics, metrics.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


class ProbeError(Exception):
    """The server could not be reached at all (refused, reset, timed out)."""


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


def _decode(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def error_text(payload: Any) -> str:
    """The human part of a Triton error body (``{"error": "..."}``) or the raw text."""
    if isinstance(payload, dict) and "error" in payload:
        return str(payload["error"])
    return str(payload)
