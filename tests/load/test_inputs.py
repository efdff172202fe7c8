"""Input building from model metadata and configuration documents (no server)."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pytest

from pytest_triton_perf.errors import InputSpecError
from pytest_triton_perf.load.inputs import build_inputs, serialize
from pytest_triton_perf.load.model_spec import ModelSpec


def spec_of(
    inputs: list[tuple[str, str, list[int]]],
    max_batch_size: int = 8,
    outputs: list[tuple[str, str, list[int]]] | None = None,
    optional: tuple[str, ...] = (),
    name: str = "m",
) -> ModelSpec:
    """A ModelSpec from metadata as Triton serves it (batch dim shown as a leading -1)."""
    prefix = [-1] if max_batch_size > 0 else []
    meta: dict[str, Any] = {
        "name": name,
        "inputs": [{"name": n, "datatype": d, "shape": prefix + s} for n, d, s in inputs],
        "outputs": [
            {"name": n, "datatype": d, "shape": prefix + s}
            for n, d, s in (outputs or [("OUT", "FP32", [1])])
        ],
    }
    config = {
        "name": name,
        "max_batch_size": max_batch_size,
        "input": [{"name": n, "optional": n in optional} for n, _, _ in inputs],
    }
    return ModelSpec.from_metadata(meta, config)


def test_spec_strips_the_batch_dimension_only_when_the_model_batches() -> None:
    batching = spec_of([("X", "FP32", [16])], max_batch_size=64)
    assert batching.batching and batching.inputs[0].dims == (16,)
    flat = spec_of([("X", "FP32", [2, 3])], max_batch_size=0)
    assert not flat.batching and flat.inputs[0].dims == (2, 3)


@pytest.mark.parametrize(
    ("datatype", "dtype", "itemsize"),
    [
        ("FP32", np.float32, 4),
        ("FP16", np.float16, 2),
        ("FP64", np.float64, 8),
        ("INT32", np.int32, 4),
        ("INT64", np.int64, 8),
        ("UINT8", np.uint8, 1),
        ("BOOL", np.bool_, 1),
        ("BF16", np.uint16, 2),
    ],
)
@pytest.mark.parametrize("mode", ["random", "zero"])
def test_generated_inputs_have_the_batched_shape_and_byte_size(
    datatype: str, dtype: Any, itemsize: int, mode: str
) -> None:
    spec = spec_of([("X", datatype, [4, 3])])
    (t,) = build_inputs(spec, mode, batch_size=5)
    assert t.name == "X" and t.datatype == datatype
    assert t.shape == (5, 4, 3)
    assert len(t.data) == 5 * 4 * 3 * itemsize
    if mode == "zero":
        assert t.data == bytes(len(t.data))


def test_random_inputs_are_seeded() -> None:
    spec = spec_of([("X", "FP32", [16])])
    a = build_inputs(spec, "random", seed=1)
    b = build_inputs(spec, "random", seed=1)
    c = build_inputs(spec, "random", seed=2)
    assert a == b and a != c


def test_non_batching_model_has_no_batch_dimension() -> None:
    spec = spec_of([("IDS", "INT32", [2]), ("S", "FP16", [3])], max_batch_size=0)
    ids, s = build_inputs(spec, "zero")
    assert ids.shape == (2,) and s.shape == (3,)


def test_bytes_inputs_are_length_prefixed() -> None:
    spec = spec_of([("S", "BYTES", [1])])
    (t,) = build_inputs(spec, {"S": np.array([b"ab"], dtype=np.object_)}, batch_size=2)
    assert t.shape == (2, 1)
    assert t.data == struct.pack("<I", 2) + b"ab" + struct.pack("<I", 2) + b"ab"
    (r,) = build_inputs(spec, "random", batch_size=3, string_length=5)
    assert len(r.data) == 3 * (4 + 5)


def test_serialize_bytes_accepts_str_and_bytes_arrays() -> None:
    assert serialize("BYTES", np.array(["é"])) == struct.pack("<I", 2) + "é".encode()
    assert serialize("BYTES", np.array([b"xy", b"z"])) == b"\x02\x00\x00\x00xy\x01\x00\x00\x00z"


def test_user_array_one_sample_is_repeated_and_a_batch_is_used_as_is() -> None:
    spec = spec_of([("X", "FP32", [2])])
    one = np.array([1.0, 2.0], dtype=np.float32)
    (t,) = build_inputs(spec, {"X": one}, batch_size=3)
    assert t.shape == (3, 2)
    assert t.data == np.tile(one, (3, 1)).tobytes()
    batch = np.arange(6, dtype=np.float32).reshape(3, 2)
    (u,) = build_inputs(spec, {"X": batch}, batch_size=3)
    assert u.data == batch.tobytes()


def test_dynamic_dims_come_from_shapes() -> None:
    spec = spec_of([("X", "FP32", [-1, 4])])
    (t,) = build_inputs(spec, "random", batch_size=2, shapes={"X": [7, 4]})
    assert t.shape == (2, 7, 4)


def test_dynamic_dims_come_from_a_user_array() -> None:
    spec = spec_of([("X", "FP32", [-1])])
    (t,) = build_inputs(spec, {"X": np.zeros(5, np.float32)})
    assert t.shape == (1, 5)


def test_optional_input_may_be_left_out_of_a_dict() -> None:
    spec = spec_of([("X", "FP32", [2]), ("Y", "FP32", [2])], optional=("Y",))
    tensors = build_inputs(spec, {"X": np.zeros(2, np.float32)})
    assert [t.name for t in tensors] == ["X"]


@pytest.mark.parametrize(
    ("inputs", "kwargs", "expected"),
    [
        (
            "random",
            {},
            "model 'm' input 'D' has dynamic shape [-1, 4]; pass shapes={'D': [N, 4]}",
        ),
        ("random", {"shapes": {"D": [3, 5]}}, "input 'D' has shape [-1, 4]"),
        ("random", {"shapes": {"D": [3, 4], "NOPE": [1]}}, "has no input 'NOPE'"),
        ("random", {"shapes": {"D": "abc"}}, "input 'D': shapes value must be"),
        ("random", {"batch_size": 9}, "accepts batch_size 1..8 (max_batch_size); got batch_size=9"),
        ("random", {"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
        ("fancy", {}, "inputs='fancy' is not accepted"),
        ({"NOPE": np.zeros(4, np.float32)}, {}, "model 'm' has no input 'NOPE'; its inputs are"),
        (
            {"X": np.zeros(4, np.float64), "D": np.zeros((2, 4), np.float32)},
            {},
            "model 'm' input 'X' has datatype FP32 (numpy float32); got array of dtype float64",
        ),
        (
            {"X": np.zeros(5, np.float32), "D": np.zeros((2, 4), np.float32)},
            {},
            "model 'm' input 'X' expects shape [4] (one sample, repeated) or [1, 4]",
        ),
        ({"D": np.zeros((2, 4), np.float32)}, {}, "input 'X' is missing from inputs"),
        ({"X": [1.0, 2.0, 3.0, 4.0]}, {}, "input 'X': expected a numpy array, got list"),
    ],
)
def test_bad_inputs_name_model_input_value_and_what_is_accepted(
    inputs: Any, kwargs: dict[str, Any], expected: str
) -> None:
    spec = spec_of([("X", "FP32", [4]), ("D", "FP32", [-1, 4])])
    with pytest.raises(InputSpecError) as info:
        build_inputs(spec, inputs, **kwargs)
    assert expected in str(info.value)


def test_batch_size_above_one_is_refused_for_a_non_batching_model() -> None:
    spec = spec_of([("X", "FP32", [4])], max_batch_size=0)
    with pytest.raises(
        InputSpecError, match=r"does not batch \(max_batch_size 0\); got batch_size=2"
    ):
        build_inputs(spec, "random", batch_size=2)


def test_bytes_input_refuses_numeric_arrays() -> None:
    spec = spec_of([("S", "BYTES", [1])])
    with pytest.raises(InputSpecError, match="input 'S' has datatype BYTES; got array of dtype"):
        build_inputs(spec, {"S": np.zeros(1, np.float32)})
