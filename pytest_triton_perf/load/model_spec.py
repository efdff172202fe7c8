"""What the load generator knows of a served model: its inputs and outputs, batching, and
which shapes and batch sizes it accepts.

The model's metadata (``GET /v2/models/<m>``) gives datatypes and shapes, its configuration
(``GET .../config``) gives ``max_batch_size``: when it is above 0, Triton prepends a batch
dimension to every input, and the metadata shows it as a leading ``-1``. Everything here is
pure: it works on those two JSON documents, so it is tested without a server.
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


@dataclass(frozen=True)
class ModelSpec:
    """What a load generator needs to know about a served model."""

    name: str
    version: str | None
    max_batch_size: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    decoupled: bool = False

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
        cls, metadata: Mapping[str, Any], config: Mapping[str, Any], version: str | None = None
    ) -> ModelSpec:
        """Build from Triton's model metadata and model configuration JSON documents."""
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
