"""Requests that point at shared-memory regions instead of carrying tensor bytes: what the
HTTP and gRPC encoders write, and which servers a region of this host is refused for."""

from __future__ import annotations

import json

import pytest
from tritonclient.grpc import service_pb2

from pytest_triton_perf.errors import InputSpecError
from pytest_triton_perf.load import grpc_client, http_client
from pytest_triton_perf.load.model_spec import ModelSpec, TensorSpec
from pytest_triton_perf.load.shared_memory import (
    check_kind,
    fixed_output_sizes,
    is_loopback,
    refusal,
)
from pytest_triton_perf.load.transport import InputTensor, ShmRef

DATA = bytes(range(64))
IN = InputTensor("INPUT0", "FP32", (1, 16), DATA, shm=ShmRef("r_in", 128, 64))
OUT = {"OUTPUT0": ShmRef("r_out", 0, 64)}


def test_grpc_request_carries_region_parameters_instead_of_bytes() -> None:
    raw = grpc_client.encode_request("simple", None, [IN], ["OUTPUT0"], OUT)
    req = service_pb2.ModelInferRequest.FromString(raw)
    assert list(req.raw_input_contents) == []
    params = req.inputs[0].parameters
    assert params["shared_memory_region"].string_param == "r_in"
    assert params["shared_memory_offset"].int64_param == 128
    assert params["shared_memory_byte_size"].int64_param == 64
    out = req.outputs[0].parameters
    assert out["shared_memory_region"].string_param == "r_out"
    assert out["shared_memory_byte_size"].int64_param == 64
    assert "shared_memory_offset" not in out  # offset 0: left out, as tritonclient does
    assert DATA not in raw


def test_http_request_carries_region_parameters_and_no_binary_data() -> None:
    raw = http_client.encode_request("h:1", "simple", None, [IN], ["OUTPUT0"], OUT)
    parts = http_client.RequestTemplate.parse(raw)
    assert parts.binary == b""
    header = json.loads(parts.json_header)
    assert header["inputs"][0]["parameters"] == {
        "shared_memory_region": "r_in",
        "shared_memory_byte_size": 64,
        "shared_memory_offset": 128,
    }
    assert header["outputs"][0]["parameters"] == {
        "shared_memory_region": "r_out",
        "shared_memory_byte_size": 64,
    }
    assert b"Content-Length: %d\r\n" % len(parts.json_header) in raw


@pytest.mark.parametrize(
    ("host", "local"),
    [
        ("127.0.0.1", True),
        ("127.8.9.1", True),
        ("::1", True),
        ("localhost", True),
        ("192.0.2.7", False),
        ("2001:db8::1", False),
        ("no-such-host.invalid", False),
    ],
)
def test_loopback_addresses_are_this_host(host: str, local: bool) -> None:
    assert is_loopback(host) is local


def test_a_server_on_another_host_is_refused_with_the_reason() -> None:
    assert refusal("system", "127.0.0.1:8000") is None
    why = refusal("system", "http://192.0.2.7:8000")
    assert why is not None and "is not on this host" in why and "/dev/shm" in why
    assert "shared_memory='none'" in why
    assert refusal("cuda", "localhost:1", server_says="its own /dev/shm") == "its own /dev/shm"


def test_kind_and_unsized_outputs_are_input_errors() -> None:
    with pytest.raises(InputSpecError, match=r"shared_memory must be one of 'none', 'system'"):
        check_kind("m", "posix")
    out = TensorSpec("OUT", "BYTES", (1,))
    spec = ModelSpec("m", None, 4, (), (out,))
    with pytest.raises(InputSpecError, match=r"output 'OUT' .* has no fixed size"):
        fixed_output_sizes(spec, 1)
    fixed = ModelSpec("m", None, 4, (), (TensorSpec("OUT", "FP16", (3, 2)),))
    assert fixed_output_sizes(fixed, 4) == {"OUT": 4 * 6 * 2}
