"""What a KServe V2 server declares (``GET /v2``), and the measurement's fallbacks where it
lacks Triton's extensions: the model's spec from its metadata alone, tensors as JSON. Pure:
no server here (tests/kserve runs them against a real MLServer)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pytest_triton_perf.errors import InputSpecError
from pytest_triton_perf.load.http_client import RequestTemplate, encode_request, json_values
from pytest_triton_perf.load.model_spec import ModelSpec, check_batch_size
from pytest_triton_perf.load.transport import InputTensor
from pytest_triton_perf.server.http import error_text
from pytest_triton_perf.server.protocol import (
    MODEL_CONFIGURATION,
    STATISTICS,
    ServerInfo,
    server_info,
)

TRITON = {
    "name": "triton",
    "version": "2.51.0",
    "extensions": ["model_configuration", "statistics", "binary_tensor_data"],
}
MLSERVER = {"name": "mlserver", "version": "1.7.1", "extensions": []}


def test_triton_declares_what_mlserver_does_not() -> None:
    triton, mlserver = server_info(TRITON), server_info(MLSERVER)
    assert not triton.kserve_only and triton.lacks(STATISTICS) is None
    assert mlserver.kserve_only
    assert mlserver.missing([MODEL_CONFIGURATION, STATISTICS]) == [MODEL_CONFIGURATION, STATISTICS]
    assert mlserver.lacks(STATISTICS) == (
        "mlserver 1.7.1 has no Triton statistics extension; its GET /v2 declares: none"
    )


def test_a_server_that_declares_nothing_readable_is_tried_for_everything() -> None:
    unknown = server_info({"name": "x"})
    assert unknown.extensions is None
    assert unknown.has(STATISTICS) and not unknown.kserve_only
    assert ServerInfo().label == "the server"


def test_spec_from_the_metadata_alone() -> None:
    meta = {
        "name": "iris",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [{"name": "y", "datatype": "INT64", "shape": [-1, 1]}],
    }
    spec = ModelSpec.from_metadata(meta, None)
    assert not spec.configured and not spec.batching and spec.sequence is None
    # Without a configuration the leading -1 is a dynamic dimension, not a batch one.
    assert spec.inputs[0].dims == (-1, 4)
    assert ModelSpec.from_metadata(meta, {"max_batch_size": 8}).inputs[0].dims == (4,)
    with pytest.raises(InputSpecError, match="no Triton model_configuration extension"):
        check_batch_size(spec, 4)


def test_tensors_as_json_values() -> None:
    floats = np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32)
    assert json_values(InputTensor("x", "FP32", (1, 4), floats.tobytes())) == pytest.approx(
        floats.ravel().tolist()
    )
    assert json_values(InputTensor("n", "INT64", (2,), np.array([1, -2]).tobytes())) == [1, -2]
    words = b"".join(len(w).to_bytes(4, "little") + w for w in (b"hello", b"\xff"))
    assert json_values(InputTensor("s", "BYTES", (2,), words)) == ["hello", "\xff"]
    with pytest.raises(InputSpecError, match="BF16 has no JSON form"):
        json_values(InputTensor("b", "BF16", (1,), b"\x00\x00"))


def test_a_json_request_is_one_json_document() -> None:
    tensor = InputTensor("x", "FP32", (1, 2), np.array([1.0, 2.0], np.float32).tobytes())
    request = encode_request("h:1", "iris", None, [tensor], ["y"], json_data=True)
    assert b"Content-Type: application/json\r\n" in request
    parts = RequestTemplate.parse(request)
    assert parts.binary == b""
    assert json.loads(parts.json_header) == {
        "inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1.0, 2.0]}],
        "outputs": [{"name": "y"}],
    }


def test_error_text_reads_fastapi_details() -> None:
    assert error_text({"detail": "Not Found"}) == "Not Found"
    assert error_text({"error": "Model nope not found"}) == "Model nope not found"
