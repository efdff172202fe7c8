"""Triton's generate extension without a server: the request bytes, server-sent events framed
from arbitrary chunks, and what an event says (:mod:`pytest_triton_perf.load.generate`)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pytest_triton_perf.load.generate import (
    SseParser,
    encode_request,
    generate_path,
    parse_event,
    request_body,
)
from pytest_triton_perf.load.inputs import serialize
from pytest_triton_perf.load.transport import InputTensor

STREAM = (
    b'data: {"model_name":"m","model_version":"1","text_output":"of"}\n\n'
    b'data: {"model_name":"m","model_version":"1","text_output":" and to"}\n\n'
    b": a comment\n\n"
    b'data: {"error":"boom"}\n\n'
)


def test_events_are_framed_whatever_the_chunks() -> None:
    expected = [
        b'{"model_name":"m","model_version":"1","text_output":"of"}',
        b'{"model_name":"m","model_version":"1","text_output":" and to"}',
        b'{"error":"boom"}',
    ]
    for size in (1, 2, 3, 7, 64, len(STREAM)):
        parser = SseParser()
        got = []
        for k in range(0, len(STREAM), size):
            got += parser.feed(STREAM[k : k + size])
        assert got == expected, size


def test_crlf_line_ends_multi_line_data_and_other_fields() -> None:
    parser = SseParser()
    data = b'event: x\r\nid: 3\r\ndata: {"a":\r\ndata:1}\r\n\r\ndata: tail'
    assert parser.feed(data[:31]) + parser.feed(data[31:]) == [b'{"a":\n1}']
    assert parser.feed(b"\r") == [] and parser.feed(b"\n\r\n") == [b"tail"]


def test_what_an_event_says() -> None:
    assert parse_event(b'{"text_output":"x"}', None, None) == (None, b"", 0)  # not decoded
    assert parse_event(b'{"text_output":" a b"}', "text_output", None) == (None, b" a b", 0)
    assert parse_event(b'{"text_output":["a","b"]}', "text_output", "text_output") == (
        None,
        b"ab",
        2,
    )
    assert parse_event(b'{"error":"model failed"}', None, None)[0] == "model failed"
    error, _, _ = parse_event(b"{truncated", "text_output", None)
    assert error is not None and error.startswith("unreadable generate response")


def tensor(name: str, datatype: str, values: np.ndarray) -> InputTensor:
    return InputTensor(name, datatype, tuple(values.shape), serialize(datatype, values))


def test_the_body_has_the_inputs_by_name_scalars_for_one_element() -> None:
    body = request_body(
        [
            tensor("text_input", "BYTES", np.array([b"hi \xc3\xa9"], dtype=np.object_)),
            tensor("stream", "BOOL", np.array([True])),
            tensor("max_tokens", "INT32", np.array([16], dtype=np.int32)),
            tensor("ids", "INT64", np.array([1, 2, 3], dtype=np.int64)),
        ]
    )
    assert json.loads(body) == {
        "text_input": "hi \u00e9",
        "stream": True,
        "max_tokens": 16,
        "ids": [1, 2, 3],
    }


@pytest.mark.parametrize(
    ("stream", "path", "accept"),
    [
        (True, b"/v2/models/my%20m/versions/2/generate_stream", b"text/event-stream"),
        (False, b"/v2/models/my%20m/versions/2/generate", b"application/json"),
    ],
)
def test_the_request_is_one_http_post(stream: bool, path: bytes, accept: bytes) -> None:
    t = tensor("text_input", "BYTES", np.array([b"x"], dtype=np.object_))
    raw = encode_request("127.0.0.1:8000", "my m", "2", [t], stream)
    head, body = raw.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST " + path + b" HTTP/1.1"
    assert b"Accept: " + accept in lines and b"Host: 127.0.0.1:8000" in lines
    assert b"Content-Length: %d" % len(body) in lines and json.loads(body) == {"text_input": "x"}
    assert generate_path("m", None, True) == "/v2/models/m/generate_stream"
