"""Exceptions of pytest-triton-perf. The core raises these; the plugin turns them into
usage errors or test failures. None of them imports pytest."""

from __future__ import annotations


class TritonPerfError(Exception):
    """Base class: every error of this package says what went wrong and what to do."""


class ConfigError(TritonPerfError):
    """A bad option, ini value or marker argument; reported as a usage error."""


class ServerStartError(TritonPerfError):
    """The server could not be started or reached, or it is not the server we started."""


class ServerDiedError(TritonPerfError):
    """The server process exited while it was in use."""


class ModelNotReadyError(TritonPerfError):
    """A requested model is missing on the server or failed to load."""


class InputSpecError(TritonPerfError):
    """Request inputs cannot be built from the model's metadata and the given arguments."""


class MeasurementError(TritonPerfError):
    """A measurement could not be completed (not: requests that failed, which are counted)."""
