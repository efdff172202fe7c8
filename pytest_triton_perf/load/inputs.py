"""Request inputs built from a model's metadata and configuration.

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

from pytest_triton_perf.errors import InputSpecError

# Triton datatype -> numpy dtype. BF16 has no numpy dtype: it travels as raw 16-bit words.
_NUMPY_DTYPES: dict[str, Any] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BF16": np.uint16,
    "BYTES": np.object_,
}

#: Length of the random strings generated for BYTES inputs (perf_analyzer's --string-length).
DEFAULT_STRING_LENGTH = 128

_ALPHABET = np.frombuffer(
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", dtype=np.uint8
)


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


@dataclass(frozen=True)
class InputTensor:
    """One input of one request, encoded once: full shape (batch included) and raw bytes.

    ``data`` is what both protocols carry: row-major little-endian values, or for BYTES each
    element as a 4-byte little-endian length followed by its bytes (Triton's wire format).
    """

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: bytes


def _fmt(shape: Sequence[int]) -> str:
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
                f" integers like {_fmt(_example(t.dims))}, got {given!r}"
            ) from None
        ok = len(dims) == len(t.dims) and all(
            g >= 1 and (m == -1 or g == m) for g, m in zip(dims, t.dims, strict=True)
        )
        if not ok:
            raise InputSpecError(
                f"model '{spec.name}' input '{t.name}' has shape {_fmt(t.dims)}"
                f"{' (batch dimension excluded)' if spec.batching else ''}; got shapes="
                f"{{'{t.name}': {list(given)}}}, accepted: {len(t.dims)} positive dims matching"
                f" the fixed ones, e.g. {_fmt(_example(t.dims))}"
            )
        out[t.name] = dims
    return out


def _example(dims: Sequence[int]) -> tuple[int, ...]:
    return tuple(8 if d == -1 else d for d in dims)


def _dynamic_error(spec: ModelSpec, t: TensorSpec) -> InputSpecError:
    example = ", ".join("N" if d == -1 else str(d) for d in t.dims)
    return InputSpecError(
        f"model '{spec.name}' input '{t.name}' has dynamic shape {_fmt(t.dims)}; pass "
        f"shapes={{'{t.name}': [{example}]}}"
    )


def _random_array(
    rng: np.random.Generator, datatype: str, shape: tuple[int, ...], string_length: int
) -> np.ndarray:
    if datatype == "BYTES":
        n = int(np.prod(shape, dtype=np.int64))
        chars = _ALPHABET[rng.integers(0, len(_ALPHABET), size=(n, string_length))]
        flat = np.array([row.tobytes() for row in chars], dtype=np.object_)
        return flat.reshape(shape)
    if datatype == "BOOL":
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    if datatype in ("FP16", "FP32", "FP64"):
        return rng.random(size=shape).astype(_NUMPY_DTYPES[datatype])
    if datatype == "BF16":
        # Upper half of float32 words = bfloat16 of the same values.
        f = rng.random(size=shape).astype("<f4")
        return (f.view("<u4") >> 16).astype(np.uint16)
    # Small non-negative integers: valid as indices and token ids of typical models, which
    # random 64-bit patterns would not be.
    return rng.integers(0, 100, size=shape).astype(_NUMPY_DTYPES[datatype])


def _zero_array(datatype: str, shape: tuple[int, ...]) -> np.ndarray:
    if datatype == "BYTES":
        arr = np.empty(shape, dtype=np.object_)
        arr.fill(b"")
        return arr
    return np.zeros(shape, dtype=_NUMPY_DTYPES[datatype])


def serialize(datatype: str, array: np.ndarray) -> bytes:
    """Triton's wire bytes for ``array`` (row-major; BYTES as length-prefixed elements)."""
    if datatype == "BYTES":
        parts = []
        for item in np.asarray(array).ravel(order="C"):
            if isinstance(item, bytes | bytearray | memoryview):
                b = bytes(item)
            elif isinstance(item, str):
                b = item.encode("utf-8")
            else:
                b = str(item).encode("utf-8")
            parts.append(len(b).to_bytes(4, "little"))
            parts.append(b)
        return b"".join(parts)
    dtype = np.dtype(_NUMPY_DTYPES[datatype]).newbyteorder("<")
    return np.ascontiguousarray(array, dtype=dtype).tobytes()


def _check_user_array(
    spec: ModelSpec,
    t: TensorSpec,
    value: Any,
    dims: tuple[int, ...],
    batch_size: int,
) -> np.ndarray:
    """Validate a caller's array; returns it with the batch dimension (tiled when absent)."""
    if not isinstance(value, np.ndarray):
        raise InputSpecError(
            f"model '{spec.name}' input '{t.name}': expected a numpy array, got"
            f" {type(value).__name__}"
        )
    if t.datatype not in _NUMPY_DTYPES:
        raise InputSpecError(
            f"model '{spec.name}' input '{t.name}' has datatype {t.datatype}, which this load"
            " generator cannot encode"
        )
    if t.datatype == "BYTES":
        if value.dtype.kind not in "OSU":
            raise InputSpecError(
                f"model '{spec.name}' input '{t.name}' has datatype BYTES; got array of dtype"
                f" {value.dtype}, accepted: object (bytes/str), bytes_ or str_ arrays"
            )
    elif t.datatype == "BF16":
        if value.dtype != np.uint16:
            raise InputSpecError(
                f"model '{spec.name}' input '{t.name}' has datatype BF16; got array of dtype"
                f" {value.dtype}, accepted: uint16 (the raw bfloat16 bit patterns)"
            )
    elif value.dtype != np.dtype(_NUMPY_DTYPES[t.datatype]):
        raise InputSpecError(
            f"model '{spec.name}' input '{t.name}' has datatype {t.datatype} (numpy"
            f" {np.dtype(_NUMPY_DTYPES[t.datatype])}); got array of dtype {value.dtype}"
        )

    def matches(shape: tuple[int, ...], want: tuple[int, ...]) -> bool:
        return len(shape) == len(want) and all(
            w == -1 or s == w for s, w in zip(shape, want, strict=True)
        )

    shape = tuple(value.shape)
    if matches(shape, dims):
        if spec.batching:
            return np.broadcast_to(value, (batch_size, *shape))
        return value
    if spec.batching and matches(shape, (batch_size, *dims)):
        return value
    accepted = _fmt(dims)
    if spec.batching:
        accepted += f" (one sample, repeated) or {_fmt((batch_size, *dims))} (batch_size first)"
    raise InputSpecError(
        f"model '{spec.name}' input '{t.name}' expects shape {accepted}; got array of shape"
        f" {_fmt(shape)}"
    )


def build_inputs(
    spec: ModelSpec,
    inputs: str | Mapping[str, Any] = "random",
    *,
    batch_size: int = 1,
    shapes: Mapping[str, Sequence[int]] | None = None,
    seed: int = 0,
    string_length: int = DEFAULT_STRING_LENGTH,
) -> tuple[InputTensor, ...]:
    """Build and encode one request's inputs.

    ``inputs`` is ``"random"`` (seeded, generated once as perf_analyzer does), ``"zero"``, or a
    mapping from input name to numpy array, validated against the model: arrays may be one
    sample (repeated ``batch_size`` times) or a whole batch. Optional inputs left out of a
    mapping are not sent. Raises InputSpecError naming model, input, value and what is accepted.
    """
    check_batch_size(spec, batch_size)
    if spec.decoupled:
        raise InputSpecError(
            f"model '{spec.name}' is decoupled (model_transaction_policy); this load generator"
            " measures request/response models only"
        )
    dims_by_name = resolve_dims(spec, shapes)
    user: Mapping[str, Any] | None = None
    if isinstance(inputs, str):
        if inputs not in ("random", "zero"):
            raise InputSpecError(
                f"model '{spec.name}': inputs={inputs!r} is not accepted; use 'random', 'zero'"
                " or a dict of numpy arrays"
            )
    elif isinstance(inputs, Mapping):
        user = inputs
        for name in user:
            spec.input(str(name))
    else:
        raise InputSpecError(
            f"model '{spec.name}': inputs must be 'random', 'zero' or a dict of numpy arrays,"
            f" got {type(inputs).__name__}"
        )

    rng = np.random.default_rng(seed)
    out: list[InputTensor] = []
    for t in spec.inputs:
        dims = dims_by_name[t.name]
        if user is not None:
            if t.name not in user:
                if t.optional:
                    continue
                raise InputSpecError(
                    f"model '{spec.name}' input '{t.name}' is missing from inputs; given:"
                    f" {', '.join(repr(k) for k in user)}; required:"
                    f" {', '.join(repr(i.name) for i in spec.inputs if not i.optional)}"
                )
            array = _check_user_array(spec, t, user[t.name], dims, batch_size)
        else:
            if t.datatype not in _NUMPY_DTYPES:
                raise InputSpecError(
                    f"model '{spec.name}' input '{t.name}' has datatype {t.datatype}, which this"
                    " load generator cannot generate"
                )
            if any(d == -1 for d in dims):
                raise _dynamic_error(spec, t)
            full = (batch_size, *dims) if spec.batching else dims
            if inputs == "zero":
                array = _zero_array(t.datatype, full)
            else:
                array = _random_array(rng, t.datatype, full, string_length)
        out.append(
            InputTensor(
                name=t.name,
                datatype=t.datatype,
                shape=tuple(int(d) for d in array.shape),
                data=serialize(t.datatype, array),
            )
        )
    return tuple(out)
