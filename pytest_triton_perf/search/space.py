"""The search space: which configuration fields a search varies, and over which values.

A space maps each key to a non-empty list of values::

    {"instance_count": [1, 2], "dynamic_batching": [False, True],
     "parameters.service_time_ms": ["10", "20"]}

Keys are exactly :data:`KEYS` plus ``parameters.<key>`` for any config parameter. Every
value is checked here, before a server is touched; a bad one raises ArgumentError (a
ValueError) naming the key, the value and what is accepted.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import Any

from pytest_triton_perf.errors import ArgumentError

#: Instance kinds a space may name (``cpu``, ``gpu``, ``auto`` in any case are accepted too).
KINDS = ("KIND_CPU", "KIND_GPU", "KIND_AUTO")
PARAMETER_PREFIX = "parameters."


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _count(least: int) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if not (_is_int(value) and value >= least):
            raise ValueError(f"an integer >= {least}")
        return value

    return check


def _kind(value: Any) -> str:
    if isinstance(value, str):
        upper = value.strip().upper()
        kind = upper if upper.startswith("KIND_") else f"KIND_{upper}"
        if kind in KINDS:
            return kind
    raise ValueError(f"one of {', '.join(KINDS)} (or cpu, gpu, auto, in any case)")


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("true or false (a bool)")
    return value


def _parameter(value: Any) -> str | int | float:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError("a string or a number (config parameters are strings)")
    return value


#: Key -> check of one value (returns the value normalised, raises ValueError naming what
#: is accepted).
CHECKS: dict[str, Callable[[Any], Any]] = {
    "instance_count": _count(1),
    "instance_kind": _kind,
    "max_batch_size": _count(0),
    "dynamic_batching": _bool,
    "preferred_batch_size": _count(1),
    "max_queue_delay_us": _count(0),
}
KEYS = tuple(CHECKS)
#: Keys that only mean something with dynamic batching on: naming one turns it on.
BATCHER_KEYS = ("preferred_batch_size", "max_queue_delay_us")


def _accepted() -> str:
    return f"{', '.join(KEYS)}, {PARAMETER_PREFIX}<key>"


def _check_of(key: str) -> Callable[[Any], Any]:
    if key in CHECKS:
        return CHECKS[key]
    if key.startswith(PARAMETER_PREFIX) and len(key) > len(PARAMETER_PREFIX):
        return _parameter
    close = difflib.get_close_matches(key, [*KEYS, f"{PARAMETER_PREFIX}<key>"], n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ArgumentError(f"search space: unknown key {key!r}.{hint} Accepted keys: {_accepted()}.")


def parse_space(space: Any) -> dict[str, tuple[Any, ...]]:
    """Validate ``space`` and return it with every value normalised (instance kinds as
    ``KIND_*``) and repeated values dropped, in the given order."""
    if not isinstance(space, Mapping):
        raise ArgumentError(
            f"search space: a mapping of key -> list of values is accepted, got "
            f"{type(space).__name__} {space!r}; e.g. {{'instance_count': [1, 2]}}."
        )
    if not space:
        raise ArgumentError(
            f"search space: empty; name at least one key with a list of values "
            f"(accepted keys: {_accepted()})."
        )
    parsed: dict[str, tuple[Any, ...]] = {}
    for key, values in space.items():
        if not isinstance(key, str):
            raise ArgumentError(f"search space: keys are strings, got {key!r}.")
        check = _check_of(key)
        if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)):
            raise ArgumentError(
                f"search space: {key}={values!r}: a list of values is accepted, e.g. "
                f"{key}=[{values!r}]."
            )
        if not values:
            raise ArgumentError(f"search space: {key}=[]: give at least one value.")
        normalised: list[Any] = []
        for value in values:
            try:
                value = check(value)
            except ValueError as e:
                raise ArgumentError(
                    f"search space: {key}: the value {value!r} is not accepted; {e} is."
                ) from None
            # 1 and 1.0 (or True) are different values here: compare by type as well.
            if not any(type(v) is type(value) and v == value for v in normalised):
                normalised.append(value)
        parsed[key] = tuple(normalised)
    return parsed
