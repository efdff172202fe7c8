"""Request inputs: from what a measurement is given (``inputs``, ``shapes``, ``batch_size``)
to the request bodies it sends, encoded once before any clock starts.

Input sets are ``"random"`` (seeded), ``"zero"``, dicts of numpy arrays, perf_analyzer JSON
input-data files, or a list of these sent in turn. Each set is validated against the
model's metadata, serialised with tritonclient's datatype mapping and BYTES encoding, and
wrapped in a complete HTTP request or a serialised gRPC ``ModelInferRequest``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tritonclient.utils import np_to_triton_dtype, serialize_byte_tensor

from pytest_triton_perf.errors import InputSpecError
from pytest_triton_perf.load import grpc_client, http_client
from pytest_triton_perf.load.input_data import load_input_data
from pytest_triton_perf.load.model_spec import (
    ModelSpec,
    TensorSpec,
    check_batch_size,
    format_shape,
    numpy_dtype,
    resolve_dims,
)
from pytest_triton_perf.load.transport import InputTensor, ShmRef
from pytest_triton_perf.urls import host_port, parse_url

#: Length of the random strings generated for BYTES inputs (perf_analyzer's --string-length).
DEFAULT_STRING_LENGTH = 128

_ALPHABET = np.frombuffer(
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", dtype=np.uint8
)

#: One input set: ``"random"``, ``"zero"``, a JSON input-data file, or arrays by input name.
InputSet = str | Mapping[str, np.ndarray]
#: What ``measure(inputs=...)`` takes: one input set or a list of them, sent in turn.
InputsArg = InputSet | Sequence[InputSet]


def encode_requests(
    spec: ModelSpec,
    inputs: InputsArg,
    *,
    protocol: str,
    http_url: str,
    version: str | None = None,
    batch_size: int = 1,
    shapes: Mapping[str, Sequence[int]] | None = None,
    seed: int = 0,
) -> tuple[tuple[bytes, ...], str]:
    """The request bodies a measurement rotates, one per input set, and the label its
    workload records (``"random"``, ``"user"``, ``"file:data.json"``, ``"list[3]:..."``).

    Set ``k`` of random inputs is seeded ``seed + k``. ``protocol`` is ``"http"`` (complete
    HTTP/1.1 requests to ``http_url``) or ``"grpc"`` (serialised ``ModelInferRequest``).
    Raises InputSpecError naming the model, the input, the value and what is accepted.
    """
    tensors, label = tensor_sets(spec, inputs, batch_size=batch_size, shapes=shapes, seed=seed)
    payloads = encode_payloads(spec, tensors, protocol=protocol, http_url=http_url, version=version)
    return payloads, label


def tensor_sets(
    spec: ModelSpec,
    inputs: InputsArg,
    *,
    batch_size: int = 1,
    shapes: Mapping[str, Sequence[int]] | None = None,
    seed: int = 0,
) -> tuple[list[tuple[InputTensor, ...]], str]:
    """The encoded input tensors of every input set (see :func:`encode_requests`), and the
    label the workload records."""
    sets, label = input_sets(spec, inputs, shapes)
    tensors = [
        build_inputs(spec, s, batch_size=batch_size, shapes=shapes, seed=seed + k)
        for k, s in enumerate(sets)
    ]
    return tensors, label


def encode_payloads(
    spec: ModelSpec,
    tensors: Sequence[Sequence[InputTensor]],
    *,
    protocol: str,
    http_url: str,
    version: str | None = None,
    output_shm: Sequence[Mapping[str, ShmRef]] | None = None,
    json_data: bool = False,
) -> tuple[bytes, ...]:
    """One request body per input set of ``tensors``: complete HTTP/1.1 requests to
    ``http_url`` or serialised gRPC ``ModelInferRequest``s. With shared memory, the inputs
    carry their region references (``InputTensor.shm``) and ``output_shm[k]`` places set
    ``k``'s outputs. ``json_data``: HTTP tensors as JSON lists, for a server without
    Triton's binary tensor extension."""
    outputs = [o.name for o in spec.outputs]
    places: Sequence[Mapping[str, ShmRef] | None] = output_shm or [None] * len(tensors)
    if protocol == "http":
        host, port = parse_url(http_url, option="server address")
        return tuple(
            http_client.encode_request(
                host_port(host, port), spec.name, version, t, outputs, o, json_data=json_data
            )
            for t, o in zip(tensors, places, strict=True)
        )
    return tuple(
        grpc_client.encode_request(spec.name, version, t, outputs, o)
        for t, o in zip(tensors, places, strict=True)
    )


def input_sets(
    spec: ModelSpec, inputs: InputsArg, shapes: Mapping[str, Sequence[int]] | None
) -> tuple[list[str | Mapping[str, np.ndarray]], str]:
    """Input sets to rotate, and the label the workload records."""

    def one(item: Any) -> tuple[list[str | Mapping[str, np.ndarray]], str]:
        if isinstance(item, str) and item not in ("random", "zero"):
            if item.endswith(".json") or Path(item).is_file():
                return list(load_input_data(item, spec, shapes)), f"file:{Path(item).name}"
            raise InputSpecError(
                f"model '{spec.name}': inputs={item!r} is not accepted; use 'random', 'zero', a"
                " dict of numpy arrays, the path of a perf_analyzer JSON input-data file, or a"
                " list of these"
            )
        if isinstance(item, str):
            return [item], item
        if isinstance(item, Mapping):
            return [item], "user"
        raise InputSpecError(
            f"model '{spec.name}': an input set must be 'random', 'zero', a dict of numpy"
            f" arrays or a JSON file path, got {type(item).__name__}"
        )

    if isinstance(inputs, str | Mapping):
        return one(inputs)
    if isinstance(inputs, Sequence) and not isinstance(inputs, bytes | bytearray):
        if not inputs:
            raise InputSpecError(f"model '{spec.name}': inputs is an empty list")
        sets: list[str | Mapping[str, np.ndarray]] = []
        labels = []
        for item in inputs:
            s, label = one(item)
            sets += s
            labels.append(label)
        return sets, f"list[{len(sets)}]:" + ",".join(dict.fromkeys(labels))
    return one(inputs)


def _dynamic_error(spec: ModelSpec, t: TensorSpec) -> InputSpecError:
    example = ", ".join("N" if d == -1 else str(d) for d in t.dims)
    return InputSpecError(
        f"model '{spec.name}' input '{t.name}' has dynamic shape {format_shape(t.dims)}; pass "
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
        return rng.random(size=shape).astype(numpy_dtype(datatype))
    if datatype == "BF16":
        # Upper half of float32 words = bfloat16 of the same values.
        f = rng.random(size=shape).astype("<f4")
        return (f.view("<u4") >> 16).astype(np.uint16)
    # Small non-negative integers: valid as indices and token ids of typical models, which
    # random 64-bit patterns would not be.
    return rng.integers(0, 100, size=shape).astype(numpy_dtype(datatype))


def _zero_array(datatype: str, shape: tuple[int, ...]) -> np.ndarray:
    if datatype == "BYTES":
        arr = np.empty(shape, dtype=np.object_)
        arr.fill(b"")
        return arr
    return np.zeros(shape, dtype=numpy_dtype(datatype))


def serialize(datatype: str, array: np.ndarray) -> bytes:
    """Triton's wire bytes for ``array``: row-major little-endian values; BYTES elements each
    prefixed with its 4-byte length (tritonclient's ``serialize_byte_tensor``: bytes as they
    are, anything else as its UTF-8 text)."""
    if datatype == "BYTES":
        array = np.asarray(array)
        if array.dtype.kind == "U":  # tritonclient takes object and bytes_ arrays
            array = array.astype(np.object_)
        encoded = serialize_byte_tensor(array)
        # One bytes object in a 0-d array; an empty tensor comes back as an empty array.
        return bytes(encoded.item()) if encoded.size else b""
    dtype = numpy_dtype(datatype)
    assert dtype is not None, datatype  # callers check the datatype first
    return np.ascontiguousarray(array, dtype=dtype.newbyteorder("<")).tobytes()


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
    want = numpy_dtype(t.datatype)
    if want is None:
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
    elif np_to_triton_dtype(value.dtype) != t.datatype:
        raise InputSpecError(
            f"model '{spec.name}' input '{t.name}' has datatype {t.datatype} (numpy"
            f" {want}); got array of dtype {value.dtype}"
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
    accepted = format_shape(dims)
    if spec.batching:
        accepted += (
            f" (one sample, repeated) or {format_shape((batch_size, *dims))} (batch_size first)"
        )
    raise InputSpecError(
        f"model '{spec.name}' input '{t.name}' expects shape {accepted}; got array of shape"
        f" {format_shape(shape)}"
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
            if numpy_dtype(t.datatype) is None:
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
