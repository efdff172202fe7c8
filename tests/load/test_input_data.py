"""perf_analyzer JSON input-data files (pure, files in tmp_path)."""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pytest_triton_perf.errors import InputSpecError
from pytest_triton_perf.load.input_data import load_input_data
from tests.load.test_inputs import spec_of

SPEC = spec_of([("X", "FP32", [4]), ("S", "BYTES", [1]), ("D", "INT32", [-1])])


def write(tmp_path: Path, doc: Any) -> Path:
    p = tmp_path / "data.json"
    p.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return p


def test_values_content_shape_and_b64_forms(tmp_path: Path) -> None:
    x_b64 = base64.b64encode(np.arange(4, dtype="<f4").tobytes()).decode()
    s_b64 = base64.b64encode(struct.pack("<I", 3) + b"abc").decode()
    doc = {
        "data": [
            {"X": [1, 2, 3, 4], "S": ["hello"], "D": {"content": [1, 2, 3], "shape": [3]}},
            {"X": {"b64": x_b64}, "S": {"b64": s_b64}, "D": {"content": [[1, 2]], "shape": [2]}},
        ]
    }
    sets = load_input_data(write(tmp_path, doc), SPEC)
    assert len(sets) == 2
    assert sets[0]["X"].dtype == np.float32 and list(sets[0]["X"]) == [1, 2, 3, 4]
    assert list(sets[0]["S"]) == [b"hello"]
    assert sets[0]["D"].dtype == np.int32 and sets[0]["D"].shape == (3,)
    assert list(sets[1]["X"]) == [0, 1, 2, 3]
    assert list(sets[1]["S"]) == [b"abc"]
    assert sets[1]["D"].shape == (2,)


def test_shapes_argument_fills_dynamic_dims(tmp_path: Path) -> None:
    doc = {"data": [{"X": [0, 0, 0, 0], "S": ["a"], "D": [5, 6]}]}
    (s,) = load_input_data(write(tmp_path, doc), SPEC, shapes={"D": [2]})
    assert s["D"].shape == (2,)


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ("{not json", "is not JSON: Expecting property name enclosed in double quotes at line 1"),
        ({"rows": []}, 'needs a non-empty "data" list'),
        ({"data": [{"X": [1, 2, 3]}]}, "data[0]['X']: input 'X' has 3 values, shape [4] needs 4"),
        ({"data": [{"Q": [1]}]}, "model 'm' has no input 'Q'"),
        ({"data": [{"D": [1, 2]}]}, "input 'D' has dynamic shape [-1]; give"),
        ({"data": [{"X": {"b64": "???"}}]}, "invalid base64"),
        (
            {"data": [{"S": {"b64": base64.b64encode(struct.pack("<I", 5) + b"ab").decode()}}]},
            "data[0]['S']: b64 BYTES data ends inside an element",
        ),
        ({"data": [{"X": ["a", "b", "c", "d"]}]}, "values are not FP32"),
        ({"data": [[{"X": [1, 2, 3, 4]}]]}, "sequence streams (lists of lists) are not supported"),
    ],
)
def test_bad_files_say_where_and_what(tmp_path: Path, doc: Any, expected: str) -> None:
    with pytest.raises(InputSpecError) as info:
        load_input_data(write(tmp_path, doc), SPEC)
    assert expected in str(info.value)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(InputSpecError, match="cannot read input data file"):
        load_input_data(tmp_path / "nope.json", SPEC)
