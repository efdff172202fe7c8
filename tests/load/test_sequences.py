"""Sequence models without a server: the configuration read, the sequence parameters on the
wire of both protocols, lengths, correlation IDs and the sequence records."""

from __future__ import annotations

import json
import pickle
import random
from typing import Any

import pytest

from pytest_triton_perf.load import grpc_client, http_client
from pytest_triton_perf.load.model_spec import ModelSpec, SequenceConfig
from pytest_triton_perf.load.recorder import Recorder, Records
from pytest_triton_perf.load.sequences import (
    SequencePlan,
    Sequencer,
    sequence_length,
)
from pytest_triton_perf.load.transport import InputTensor

CONTROLS = [
    {"name": "START", "control": [{"kind": "CONTROL_SEQUENCE_START", "int32_false_true": [0, 1]}]},
    {"name": "END", "control": [{"kind": "CONTROL_SEQUENCE_END", "int32_false_true": [0, 1]}]},
    {
        "name": "CORRID",
        "control": [{"kind": "CONTROL_SEQUENCE_CORRID", "data_type": "TYPE_STRING"}],
    },
]


def config(**sequence_batching: Any) -> dict[str, Any]:
    return {
        "name": "acc",
        "max_batch_size": 8,
        "instance_group": [{"kind": "KIND_CPU", "count": 2}],
        "sequence_batching": sequence_batching,
    }


def test_configuration_without_sequence_batching_is_not_a_sequence_model() -> None:
    spec = ModelSpec.from_metadata({"name": "simple"}, {"max_batch_size": 8})
    assert spec.sequence is None


@pytest.mark.parametrize(
    ("batching", "strategy", "slots"),
    [
        ({}, "direct", 16),  # direct, the default: max_batch_size per instance
        ({"direct": {}}, "direct", 16),
        ({"oldest": {"max_candidate_sequences": 5}}, "oldest", 5),
    ],
)
def test_strategy_and_slots(batching: dict[str, Any], strategy: str, slots: int) -> None:
    seq = SequenceConfig.from_config(config(**batching))
    assert seq is not None
    assert (seq.strategy, seq.slots) == (strategy, slots)
    assert seq.max_sequence_idle_us == 1_000_000  # Triton's default
    assert seq.corrid_type is None and not seq.string_ids


def test_controls_and_a_string_corrid_are_read() -> None:
    seq = SequenceConfig.from_config(
        config(control_input=CONTROLS, max_sequence_idle_microseconds=5_000_000)
    )
    assert seq is not None and seq.string_ids and seq.max_sequence_idle_us == 5_000_000
    assert seq.describe_controls() == (
        "START (CONTROL_SEQUENCE_START), END (CONTROL_SEQUENCE_END),"
        " CORRID (CONTROL_SEQUENCE_CORRID, TYPE_STRING)"
    )


@pytest.mark.parametrize(
    ("data_type", "max_id"),
    [("TYPE_INT32", 2**31 - 1), ("TYPE_UINT32", 2**32 - 1), ("TYPE_UINT64", 2**63 - 1)],
)
def test_ids_fit_the_corrid_type(data_type: str, max_id: int) -> None:
    control = [
        {"name": "C", "control": [{"kind": "CONTROL_SEQUENCE_CORRID", "data_type": data_type}]}
    ]
    seq = SequenceConfig.from_config(config(control_input=control))
    assert seq is not None and seq.max_id == max_id and not seq.string_ids
    plan = SequencePlan(length=2, max_id=max_id, id_base=max_id - 2)
    s = Sequencer(plan, "grpc", [b""])
    ids = [s.next_id() for _ in range(4)]
    assert ids == [max_id - 1, max_id, 1, 2]  # wraps within 1..max_id, never 0


@pytest.mark.parametrize("sid", [7, 2**63 - 1, "session-7"])
@pytest.mark.parametrize(
    ("start", "end"), [(True, False), (False, False), (False, True), (True, True)]
)
def test_grpc_parameters_parse_as_tritonclient_sets_them(
    sid: int | str, start: bool, end: bool
) -> None:
    from tritonclient.grpc import service_pb2

    base = grpc_client.encode_request(
        "acc", None, [InputTensor("INPUT0", "INT32", (1, 1), b"\x01\x00\x00\x00")], ["OUTPUT0"]
    )
    got = service_pb2.ModelInferRequest.FromString(
        base + grpc_client.sequence_parameters(sid, start, end)
    )
    want = service_pb2.ModelInferRequest.FromString(base)
    if isinstance(sid, str):
        want.parameters["sequence_id"].string_param = sid
    else:
        want.parameters["sequence_id"].int64_param = sid
    want.parameters["sequence_start"].bool_param = start
    want.parameters["sequence_end"].bool_param = end
    assert got == want
    assert got.parameters["sequence_start"].WhichOneof("parameter_choice") == "bool_param"


def test_http_template_renders_the_request_it_was_parsed_from_and_adds_parameters() -> None:
    tensor = InputTensor("INPUT0", "INT32", (1, 1), b"\x05\x00\x00\x00")
    request = http_client.encode_request("127.0.0.1:8000", "acc", "1", [tensor], ["OUTPUT0"])
    template = http_client.RequestTemplate.parse(request)
    assert template.render() == request
    rendered = template.render(http_client.sequence_parameters("s-1", True, False))
    head, _, body = rendered.partition(b"\r\n\r\n")
    headers = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:])
    json_len = int(headers[b"Inference-Header-Content-Length"])
    assert int(headers[b"Content-Length"]) == len(body)
    doc = json.loads(body[:json_len])
    assert doc["parameters"] == {
        "sequence_id": "s-1",
        "sequence_start": True,
        "sequence_end": False,
    }
    assert doc["inputs"][0]["name"] == "INPUT0" and body[json_len:] == tensor.data
    assert head.startswith(b"POST /v2/models/acc/versions/1/infer HTTP/1.1\r\n")
    assert b'"sequence_id":42,' in http_client.sequence_parameters(42, False, True)


def test_lengths_follow_perf_analyzers_rule() -> None:
    rng = random.Random(0)
    lengths = [sequence_length(rng, 20, 0.2) for _ in range(2000)]
    assert min(lengths) == 17 and max(lengths) == 23  # 20 + int(u * 4), u in [-1, 1)
    assert 19 < sum(lengths) / len(lengths) < 21
    assert {sequence_length(rng, 20, 0.0) for _ in range(10)} == {20}
    assert min(sequence_length(rng, 1, 0.9) for _ in range(100)) == 1  # never below 1


def test_lengths_are_seeded_per_worker() -> None:
    plan = SequencePlan(length=10, variation=0.5, seed=3)

    def lengths(worker: int, seed_plan: SequencePlan = plan) -> list[int]:
        s = Sequencer(seed_plan, "grpc", [b""], worker=worker, workers=2)
        return [s.next_length() for _ in range(30)]

    assert lengths(0) == lengths(0)
    assert lengths(0) != lengths(1)
    assert lengths(0) != lengths(0, SequencePlan(length=10, variation=0.5, seed=4))


def test_ids_are_unique_across_workers_and_strings_on_request() -> None:
    plan = SequencePlan(length=3, id_base=1000, string_ids=True)
    sequencers = [Sequencer(plan, "grpc", [b""], worker=w, workers=3) for w in range(3)]
    ids = [s.next_id() for s in sequencers for _ in range(50)]
    assert len(set(ids)) == 150 and all(isinstance(i, str) for i in ids)
    assert sorted(int(i) for i in ids) == list(range(1001, 1151))
    # A driver opened again, and the probe, use IDs none of these use.
    again = Sequencer(plan.renewed(), "grpc", [b""], worker=0, workers=4)
    probe = Sequencer(plan.for_probe(), "grpc", [b""])
    assert not {again.next_id() for _ in range(100)} & set(ids)
    assert probe.next_id() not in ids


def test_sequences_are_recorded_merged_and_cut_like_requests() -> None:
    def recorder(rows: list[tuple[int, int, bool, int]]) -> Records:
        r = Recorder()
        for end, lat, ok, length in rows:
            r.sequences.add(end, lat, ok, length)
        return r.snapshot()

    a = recorder([(10, 5, True, 3), (40, 6, False, 4)])
    b = recorder([(20, 7, True, 5)])
    merged = Records.merge([a, b])
    assert list(merged.sequences.end_ns) == [10, 20, 40]
    assert list(merged.sequences.length) == [3, 5, 4]
    assert list(merged.sequences.ok) == [True, True, False]
    span = merged.between(15, 40)
    assert list(span.sequences.latency_ns) == [7]
    back = pickle.loads(pickle.dumps(merged))
    assert list(back.sequences.end_ns) == [10, 20, 40]
