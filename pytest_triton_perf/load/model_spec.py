"""What the load generator knows of a served model: its inputs and outputs, batching, and
which shapes and batch sizes it accepts.

The model's metadata (``GET /v2/models/<m>``) gives datatypes and shapes, its configuration
(``GET .../config``) gives ``max_batch_size``: when it is above 0, Triton prepends a batch
dimension to every input, and the metadata shows it as a leading ``-1``. Everything here is
pure: it works on those two JSON documents, so it is tested without a server.

A KServe V2 server without Triton's model-configuration extension (MLServer) gives the
metadata alone: the spec is then ``configured`` False, with no batching (a leading ``-1`` of
the metadata is a dynamic dimension that ``shapes=`` fixes: the batch rows of each request),
no sequence batching, no ensemble steps and request/response transactions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tritonclient.utils import triton_to_np_dtype

from pytest_triton_perf.errors import InputSpecError


def numpy_dtype(datatype: str) -> np.dtype[Any] | None:
    """The numpy dtype of a Triton datatype (tritonclient's mapping), None when there is none.

    BF16 travels as its raw 16-bit words (uint16): numpy has no bfloat16 of its own.
    """
    if datatype == "BF16":
        return np.dtype(np.uint16)
    found = triton_to_np_dtype(datatype)
    return None if found is None else np.dtype(found)


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a model; ``dims`` exclude the batch dimension, -1 is dynamic."""

    name: str
    datatype: str
    dims: tuple[int, ...]
    optional: bool = False


#: Control kinds of ``sequence_batching.control_input`` Triton fills from a request's flags.
CONTROL_KINDS = (
    "CONTROL_SEQUENCE_START",
    "CONTROL_SEQUENCE_END",
    "CONTROL_SEQUENCE_READY",
    "CONTROL_SEQUENCE_CORRID",
)
#: Largest correlation ID the load generator sends for a CORRID control of each data type
#: (gRPC carries the id as an int64 parameter, so 64-bit types stop at 2^63 - 1).
CORRID_MAX = {
    "TYPE_INT32": 2**31 - 1,
    "TYPE_UINT32": 2**32 - 1,
    "TYPE_INT64": 2**63 - 1,
    "TYPE_UINT64": 2**63 - 1,
    "TYPE_STRING": 2**63 - 1,
}


@dataclass(frozen=True)
class ControlInput:
    """One control input of a sequence model: its name, kind and (for CORRID) data type."""

    name: str
    kind: str
    data_type: str | None = None

    def describe(self) -> str:
        """``START (CONTROL_SEQUENCE_START)``, ``CORRID (CONTROL_SEQUENCE_CORRID, TYPE_STRING)``."""
        extra = f", {self.data_type}" if self.data_type else ""
        return f"{self.name} ({self.kind}{extra})"


@dataclass(frozen=True)
class SequenceConfig:
    """The ``sequence_batching`` section of a model configuration, as far as a load
    generator needs it: the strategy, the sequence slots, the idle limit and the controls."""

    strategy: str  # "direct" or "oldest"
    slots: int  # sequences the batcher serves at once; more wait in its backlog
    max_sequence_idle_us: int
    controls: tuple[ControlInput, ...] = ()

    @property
    def corrid_type(self) -> str | None:
        """Data type of the CONTROL_SEQUENCE_CORRID input, None when the model has none."""
        for c in self.controls:
            if c.kind == "CONTROL_SEQUENCE_CORRID":
                return c.data_type or "TYPE_UINT64"
        return None

    @property
    def string_ids(self) -> bool:
        """True when the model's configuration asks for string correlation IDs."""
        return self.corrid_type == "TYPE_STRING"

    @property
    def max_id(self) -> int:
        """The largest correlation ID the model's CORRID control can hold."""
        return CORRID_MAX.get(self.corrid_type or "TYPE_UINT64", 2**63 - 1)

    def describe_controls(self) -> str:
        """The control inputs as messages name them, or ``(none)``."""
        return ", ".join(c.describe() for c in self.controls) or "(none)"

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SequenceConfig | None:
        """Parse the configuration JSON (``GET /v2/models/<m>/config``); None without
        ``sequence_batching``.

        Slots: with the ``oldest`` strategy, ``max_candidate_sequences``; with ``direct``
        (the default), one per batch slot of every instance (``max_batch_size``, at least
        1, times the instance count), as Triton's sequence batcher allots them.
        """
        seq = config.get("sequence_batching")
        if not isinstance(seq, Mapping):
            return None
        max_batch = max(1, int(config.get("max_batch_size", 0) or 0))
        instances = sum(
            max(1, int(g.get("count", 1) or 1)) * max(1, len(g.get("gpus") or []))
            for g in config.get("instance_group") or []
            if isinstance(g, Mapping)
        )
        instances = max(1, instances)
        oldest = seq.get("oldest")
        if isinstance(oldest, Mapping):
            strategy = "oldest"
            slots = int(oldest.get("max_candidate_sequences", 0) or 0) or max_batch * instances
        else:
            strategy = "direct"
            slots = max_batch * instances
        controls = []
        for entry in seq.get("control_input") or []:
            for control in entry.get("control") or []:
                kind = str(control.get("kind", ""))
                data_type = control.get("data_type")
                controls.append(
                    ControlInput(
                        name=str(entry.get("name", "")),
                        kind=kind,
                        data_type=(
                            str(data_type)
                            if kind == "CONTROL_SEQUENCE_CORRID"
                            and data_type
                            and data_type != "TYPE_INVALID"
                            else None
                        ),
                    )
                )
        idle = int(seq.get("max_sequence_idle_microseconds", 0) or 0) or 1_000_000
        return cls(
            strategy=strategy, slots=slots, max_sequence_idle_us=idle, controls=tuple(controls)
        )


@dataclass(frozen=True)
class ModelSpec:
    """What a load generator needs to know about a served model."""

    name: str
    version: str | None
    max_batch_size: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    decoupled: bool = False
    # The configuration's ``sequence_batching`` (a stateful model), None without it.
    sequence: SequenceConfig | None = None
    # ``platform`` and ``backend`` of the configuration ("ensemble" / "python", ...).
    platform: str = ""
    backend: str = ""
    # An ensemble's composing models, one entry per step of ``ensemble_scheduling`` in the
    # configuration's order (a model used by two steps appears twice).
    ensemble_steps: tuple[str, ...] = ()
    # False where the server gave no model configuration (a KServe V2 server other than
    # Triton): everything above that the configuration holds has its default.
    configured: bool = True

    @property
    def ensemble(self) -> bool:
        """True for an ensemble (``platform: "ensemble"``)."""
        return self.platform == "ensemble"

    @property
    def batching(self) -> bool:
        """True when Triton prepends a batch dimension to every tensor."""
        return self.max_batch_size > 0

    def input(self, name: str) -> TensorSpec:
        """The input called ``name``; InputSpecError listing the inputs if there is none."""
        for t in self.inputs:
            if t.name == name:
                return t
        raise InputSpecError(
            f"model '{self.name}' has no input '{name}'; its inputs are "
            f"{', '.join(repr(t.name) for t in self.inputs) or '(none)'}"
        )

    @classmethod
    def from_metadata(
        cls,
        metadata: Mapping[str, Any],
        config: Mapping[str, Any] | None,
        version: str | None = None,
    ) -> ModelSpec:
        """Build from Triton's model metadata and model configuration JSON documents;
        ``config`` None where the server has none (``configured`` False)."""
        configured = config is not None
        config = config if config is not None else {}
        name = str(metadata.get("name") or config.get("name") or "?")
        max_batch_size = int(config.get("max_batch_size", 0) or 0)
        optional = {
            str(i.get("name")): bool(i.get("optional", False)) for i in config.get("input", [])
        }

        def tensors(entries: Sequence[Mapping[str, Any]], is_input: bool) -> tuple[TensorSpec, ...]:
            out = []
            for e in entries:
                shape = tuple(int(d) for d in e.get("shape", []))
                if max_batch_size > 0 and shape:
                    # The metadata shows the batch dimension as a leading -1: not the user's.
                    shape = shape[1:]
                tname = str(e["name"])
                out.append(
                    TensorSpec(
                        name=tname,
                        datatype=str(e["datatype"]),
                        dims=shape,
                        optional=is_input and optional.get(tname, False),
                    )
                )
            return tuple(out)

        policy = config.get("model_transaction_policy") or {}
        return cls(
            name=name,
            version=version,
            max_batch_size=max_batch_size,
            inputs=tensors(metadata.get("inputs", []), True),
            outputs=tensors(metadata.get("outputs", []), False),
            decoupled=bool(policy.get("decoupled", False)),
            sequence=SequenceConfig.from_config(config),
            platform=str(config.get("platform") or ""),
            backend=str(config.get("backend") or ""),
            ensemble_steps=ensemble_steps(config),
            configured=configured,
        )


def ensemble_steps(config: Mapping[str, Any]) -> tuple[str, ...]:
    """The composing model of each step of an ensemble configuration (JSON), in order; ()
    for any other model."""
    scheduling = config.get("ensemble_scheduling")
    if not isinstance(scheduling, Mapping):
        return ()
    return tuple(
        str(step.get("model_name"))
        for step in scheduling.get("step") or []
        if isinstance(step, Mapping) and step.get("model_name")
    )


def format_shape(shape: Sequence[int]) -> str:
    """``[2, 4]``: a shape as messages show it."""
    return "[" + ", ".join(str(d) for d in shape) + "]"


def check_batch_size(spec: ModelSpec, batch_size: int) -> None:
    """InputSpecError unless ``batch_size`` is one the model accepts."""
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise InputSpecError(
            f"model '{spec.name}': batch_size must be an integer >= 1, got {batch_size!r}"
        )
    if not spec.batching and batch_size != 1:
        if not spec.configured:
            raise InputSpecError(
                f"model '{spec.name}': the server gives no model configuration (no Triton"
                f" model_configuration extension), so requests carry no batch dimension of"
                f" their own; got batch_size={batch_size}, accepted: 1. Send several rows per"
                f" request through shapes= instead, e.g. shapes={{'INPUT': [8, ...]}}"
            )
        raise InputSpecError(
            f"model '{spec.name}' does not batch (max_batch_size 0); got batch_size={batch_size},"
            " accepted: 1"
        )
    if spec.batching and batch_size > spec.max_batch_size:
        raise InputSpecError(
            f"model '{spec.name}' accepts batch_size 1..{spec.max_batch_size} (max_batch_size);"
            f" got batch_size={batch_size}"
        )


def resolve_dims(
    spec: ModelSpec, shapes: Mapping[str, Sequence[int]] | None
) -> dict[str, tuple[int, ...]]:
    """The per-request dims (without batch) of every input, dynamic dims filled from ``shapes``.

    Inputs whose dims stay dynamic are left with -1 here; :func:`build_inputs` raises for them
    unless the caller supplies an array that fixes the shape.
    """
    shapes = dict(shapes or {})
    for name in shapes:
        spec.input(name)  # raises for an unknown name
    out: dict[str, tuple[int, ...]] = {}
    for t in spec.inputs:
        if t.name not in shapes:
            out[t.name] = t.dims
            continue
        given = shapes[t.name]
        try:
            dims = tuple(int(d) for d in given)
        except (TypeError, ValueError):
            raise InputSpecError(
                f"model '{spec.name}' input '{t.name}': shapes value must be a sequence of"
                f" integers like {format_shape(_example(t.dims))}, got {given!r}"
            ) from None
        ok = len(dims) == len(t.dims) and all(
            g >= 1 and (m == -1 or g == m) for g, m in zip(dims, t.dims, strict=True)
        )
        if not ok:
            raise InputSpecError(
                f"model '{spec.name}' input '{t.name}' has shape {format_shape(t.dims)}"
                f"{' (batch dimension excluded)' if spec.batching else ''}; got shapes="
                f"{{'{t.name}': {list(given)}}}, accepted: {len(t.dims)} positive dims matching"
                f" the fixed ones, e.g. {format_shape(_example(t.dims))}"
            )
        out[t.name] = dims
    return out


def _example(dims: Sequence[int]) -> tuple[int, ...]:
    return tuple(8 if d == -1 else d for d in dims)
