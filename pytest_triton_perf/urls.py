"""Server addresses: the one parser of ``host:port`` / ``http://host:port`` and its inverse.

Pure (no network, no pytest), so that the option parsers, the launchers and the load
clients all read an address the same way and name the option when it is wrong.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pytest_triton_perf.errors import ConfigError

ACCEPTED = "host:port or http://host:port, e.g. localhost:8000"


def parse_url(value: str, *, option: str) -> tuple[str, int]:
    """``host:port``, ``http://host:port`` or ``grpc://host:port`` -> (host, port).

    IPv6 hosts come back without brackets. A ConfigError names ``option``, the value and
    the accepted forms.
    """
    text = value.strip()
    try:
        parsed = urlsplit(text if "://" in text else f"http://{text}")
    except ValueError as e:  # e.g. an unbalanced IPv6 bracket
        raise ConfigError(
            f"{option}={value!r} is not a server address ({e}); use {ACCEPTED}."
        ) from None
    if parsed.scheme not in ("http", "grpc"):
        raise ConfigError(
            f"{option}={value!r}: scheme {parsed.scheme!r} is not supported; use {ACCEPTED}."
        )
    try:
        port = parsed.port
    except ValueError:
        port = None
    if not parsed.hostname or port is None or parsed.path not in ("", "/"):
        raise ConfigError(f"{option}={value!r} is not a server address; use {ACCEPTED}.")
    return parsed.hostname, port


def host_port(host: str, port: int) -> str:
    """``host:port`` with IPv6 hosts bracketed, as tritonclient takes it."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def base_url(url: str) -> str:
    """``http://host:port`` of an address given as ``host:port`` or with a scheme."""
    host, port = parse_url(url, option="server address")
    return "http://" + host_port(host, port)
