"""A model's configuration as a protobuf message, and the edits a search candidate makes.

Every edit is made on ``tritonclient``'s ``ModelConfig`` message parsed from the committed
``config.pbtxt``, never on its text, so a candidate's configuration is exactly what Triton
would read and what a user can commit.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pytest_triton_perf.errors import ArgumentError
from pytest_triton_perf.search.space import BATCHER_KEYS, PARAMETER_PREFIX


def parse_config(path: Path) -> Any:
    """The ``ModelConfig`` message of ``path`` (a ``config.pbtxt``); ArgumentError when it
    is missing or does not parse."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    if not path.is_file():
        raise ArgumentError(
            f"{path}: no such file; a configuration search edits the model's committed "
            f"config.pbtxt, so the model needs one."
        )
    try:
        return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    except text_format.ParseError as e:
        raise ArgumentError(f"{path} does not parse as a model configuration: {e}") from None


def config_text(config: Any) -> str:
    """``config`` in protobuf text format, as a ``config.pbtxt`` is written."""
    from google.protobuf import text_format

    return str(text_format.MessageToString(config))


def config_diff(committed: Any, candidate: Any, name: str = "config.pbtxt") -> str:
    """Unified diff of the committed configuration and a candidate's, both in text format
    ("" when they are the same)."""
    return "".join(
        difflib.unified_diff(
            config_text(committed).splitlines(keepends=True),
            config_text(candidate).splitlines(keepends=True),
            fromfile=f"committed/{name}",
            tofile=f"candidate/{name}",
        )
    )


def _groups(config: Any) -> list[Any]:
    """The instance groups to edit: every one there is, or a new one where there is none
    (Triton then uses one instance of the default kind)."""
    if not config.instance_group:
        config.instance_group.add(count=1)
    return list(config.instance_group)


def apply_values(committed: Any, values: Mapping[str, Any]) -> Any:
    """A copy of ``committed`` with the space's ``values`` set on the message.

    ``preferred_batch_size`` or ``max_queue_delay_us`` turn dynamic batching on unless
    ``dynamic_batching`` is among the values (validity is :func:`invalid_reason`'s job).
    """
    from tritonclient.grpc import model_config_pb2

    config = model_config_pb2.ModelConfig()
    config.CopyFrom(committed)
    for key, value in values.items():
        if key == "instance_count":
            for group in _groups(config):
                group.count = value
        elif key == "instance_kind":
            for group in _groups(config):
                group.kind = model_config_pb2.ModelInstanceGroup.Kind.Value(value)
        elif key == "max_batch_size":
            config.max_batch_size = value
        elif key == "dynamic_batching":
            if value:
                config.dynamic_batching.SetInParent()  # keeps committed batcher settings
            else:
                config.ClearField("dynamic_batching")
        elif key == "preferred_batch_size":
            if values.get("dynamic_batching", True):
                config.dynamic_batching.preferred_batch_size[:] = [value]
        elif key == "max_queue_delay_us":
            if values.get("dynamic_batching", True):
                config.dynamic_batching.max_queue_delay_microseconds = value
        elif key.startswith(PARAMETER_PREFIX):
            config.parameters[key[len(PARAMETER_PREFIX) :]].string_value = str(value)
        else:  # parse_space lets no other key through
            raise AssertionError(f"unknown space key {key!r}")
    return config


def invalid_reason(values: Mapping[str, Any], config: Any) -> str | None:
    """Why the combination ``values`` (giving ``config``) cannot be a valid configuration,
    or None: such combinations are skipped, not measured."""
    batching = values.get("dynamic_batching")
    for key in BATCHER_KEYS:
        if key in values and batching is False:
            return f"{key} needs dynamic batching, and dynamic_batching is False"
    mbs = config.max_batch_size
    preferred = list(config.dynamic_batching.preferred_batch_size)
    if config.HasField("dynamic_batching") and mbs == 0:
        return "dynamic batching needs max_batch_size > 0"
    if any(p > mbs for p in preferred):
        return f"preferred_batch_size {max(preferred)} > max_batch_size {mbs}"
    return None


def values_of(config: Any, keys: Any) -> dict[str, Any]:
    """What ``config`` has for each space key (the committed configuration's "values")."""
    from tritonclient.grpc import model_config_pb2

    groups = list(config.instance_group)
    batcher = config.dynamic_batching if config.HasField("dynamic_batching") else None
    out: dict[str, Any] = {}
    for key in keys:
        if key == "instance_count":
            out[key] = (groups[0].count or 1) if groups else 1
        elif key == "instance_kind":
            kind = groups[0].kind if groups else model_config_pb2.ModelInstanceGroup.KIND_AUTO
            out[key] = model_config_pb2.ModelInstanceGroup.Kind.Name(kind)
        elif key == "max_batch_size":
            out[key] = config.max_batch_size
        elif key == "dynamic_batching":
            out[key] = batcher is not None
        elif key == "preferred_batch_size":
            preferred = list(batcher.preferred_batch_size) if batcher is not None else []
            out[key] = preferred[0] if preferred else None
        elif key == "max_queue_delay_us":
            out[key] = batcher.max_queue_delay_microseconds if batcher is not None else None
        elif key.startswith(PARAMETER_PREFIX):
            name = key[len(PARAMETER_PREFIX) :]
            out[key] = config.parameters[name].string_value if name in config.parameters else None
    return out


def same_config(a: Any, b: Any) -> bool:
    """Whether two messages are the same configuration."""
    return bool(a.SerializeToString(deterministic=True) == b.SerializeToString(deterministic=True))


def instance_count(config: Any) -> int:
    """The instances ``config`` runs: the sum of its instance groups' counts (a group with
    a GPU list runs its count on each listed GPU); 1 where none is given."""
    groups = list(config.instance_group)
    if not groups:
        return 1
    return sum(max(1, g.count or 1) * max(1, len(g.gpus)) for g in groups)


def batch_limit(config: Any, batch_size: int = 1) -> int:
    """Requests of ``batch_size`` one execution of ``config`` serves at most: what fits in
    ``max_batch_size`` with dynamic batching, else 1."""
    if not config.HasField("dynamic_batching") or config.max_batch_size <= 0:
        return 1
    return max(1, config.max_batch_size // max(1, batch_size))
