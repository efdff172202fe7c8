"""Exceptions of pytest-triton-perf: one hierarchy under :class:`TritonPerfError`.

The core raises these and never imports pytest. The plugin turns configuration errors into
usage errors; every other one reaches the test that made the call, so ``pytest.raises`` can
catch it, and a test that does not is reported in one line. An error whose cause is a value
the caller passed is also a ``ValueError``.
"""

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


class ArgumentError(TritonPerfError, ValueError):
    """A value passed to a call is not one it accepts (e.g. a window length of 0); the
    message names the value and what is accepted."""


class InputSpecError(ArgumentError):
    """A measurement's arguments do not fit the model or the load generator: inputs, shapes,
    batch size, concurrency, request rate, protocol."""


class MeasurementError(TritonPerfError):
    """A measurement could not be completed (not: requests that failed, which are counted)."""


class CliError(TritonPerfError):
    """A usage or file problem; the message is shown as it is and the exit status is 2."""


class PlotError(TritonPerfError):
    """Plots cannot be made (matplotlib is missing)."""
