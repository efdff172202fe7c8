"""Sequence (stateful) models against the real embedded server.

``seq_ledger`` (tests/models) keeps, per correlation ID, the starts, ends and requests it
saw and the running sum of its inputs, and notes any request that breaks the sequence
protocol; the tests read that ledger back from the model and check it against the
measurement: every sequence started and ended exactly once, no request lost or mixed into
another sequence, over each protocol and across worker processes.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from itertools import count
from typing import Any

import numpy as np
import pytest
import tritonclient.http

from pytest_triton_perf.errors import InputSpecError
from pytest_triton_perf.load.model_info import fetch_stats
from pytest_triton_perf.load.model_spec import ModelSpec
from pytest_triton_perf.measure.checks import sequence_plan
from pytest_triton_perf.measure.engine import MeasureSettings, measure
from pytest_triton_perf.measure.result import PerfResult
from pytest_triton_perf.measure.server_stats import StatsSnapshot
from pytest_triton_perf.server.local import LocalTritonServer

FAST = MeasureSettings(warmup_s=0.2, windows=2, window_s=0.4, max_windows=2)
ONES = {"INPUT0": np.array([1], dtype=np.int32)}
LEDGER = "seq_ledger"
#: IDs of the ledger queries: far from the random IDs of measurements (which start anywhere
#: in 1..2^63-1, so a clash is a 1 in 10^15 event).
_QUERY_IDS = count(1)


def take_ledger(server: LocalTritonServer) -> dict[str, dict[str, int]]:
    """The ledger of ``seq_ledger`` since the last call (the model clears it)."""
    client = tritonclient.http.InferenceServerClient(server.http_url)
    try:
        x = tritonclient.http.InferInput("INPUT0", [1, 1], "INT32")
        x.set_data_from_numpy(np.array([[-1]], dtype=np.int32))
        r = client.infer(
            LEDGER, [x], sequence_id=next(_QUERY_IDS), sequence_start=True, sequence_end=True
        )
    finally:
        client.close()
    ledger: dict[str, dict[str, int]] = json.loads(r.as_numpy("LEDGER").flat[0])
    return ledger


def server_requests(server: LocalTritonServer, model: str, *, at_least: int = 0) -> int:
    """The requests the server has counted for ``model``, re-read for up to 2 s while they
    are fewer than ``at_least``: Triton publishes a request's statistics a moment after its
    response leaves (``ServerStats.settled`` waits the same way)."""
    deadline = time.monotonic() + 2.0
    while True:
        s = StatsSnapshot.from_json(fetch_stats(server.http_url, model))
        if s.success + s.fail >= at_least or time.monotonic() >= deadline:
            return s.success + s.fail
        time.sleep(0.02)


def measure_ledger(server: LocalTritonServer, **kwargs: Any) -> tuple[PerfResult, dict[str, Any]]:
    """A measurement of ``seq_ledger`` with every input 1, its ledger, and a check that the
    ledger holds every request the server counted during it (none lost, none extra)."""
    first = server_requests(server, LEDGER)
    take_ledger(server)
    # The query that cleared the ledger, counted before the measurement starts (CI once read
    # it counted a moment late, inside the measurement: 2273 counted against 2272 recorded).
    before = server_requests(server, LEDGER, at_least=first + 1)
    r = measure(server, LEDGER, inputs=ONES, settings=FAST, **kwargs)
    # One model instance: the query runs after every request of the measurement.
    ledger = take_ledger(server)
    recorded = sum(e["requests"] for e in ledger.values())
    counted = server_requests(server, LEDGER, at_least=before + recorded + 1) - before - 1
    assert recorded == counted
    return r, ledger


def check_sequences(r: PerfResult, ledger: dict[str, Any], *, length: int, slots: int) -> None:
    """Every ID started and ended once, with its own requests only, none longer than
    ``length``; only the sequences cut short at the end of a phase are shorter."""
    bad = {
        k: e
        for k, e in ledger.items()
        if (e["starts"], e["ends"], e["orphans"], e["restarts"]) != (1, 1, 0, 0)
        or e["sum"] != e["requests"]  # inputs are all 1: the running sum counts requests
        or e["requests"] > length
    }
    assert not bad, list(bad.items())[:5]
    short = [k for k, e in ledger.items() if e["requests"] < length]
    # The probe's one-request sequence, and at most one per slot at each of the two stops
    # (warm-up, windows).
    assert len(short) <= 1 + 2 * slots
    assert r.errors == 0 and r.first_error is None
    assert r.sequences is not None and r.sequences >= 10
    assert r.sequences <= len(ledger) - len(short)
    assert r.sequence_errors == 0
    seq, req = r.sequence_latency_ms, r.latency_ms
    assert seq is not None and req is not None and seq.count == r.sequences
    # A sequence is its requests one after the other.
    assert seq.min >= length * req.min
    assert seq.avg == pytest.approx(length * req.avg, rel=0.35)
    assert r.server is not None and r.server.requests == r.requests + r.drained + r.ramp


@pytest.mark.parametrize(
    ("protocol", "options", "id_type"),
    [
        ("http", {}, "int"),
        ("grpc", {"sequence_id_type": "string"}, "str"),
        ("grpc", {"grpc_client": "grpcio"}, "int"),
    ],
    ids=["http", "grpc-lean-string-ids", "grpcio"],
)
def test_every_sequence_is_started_and_ended_once_with_its_own_requests(
    server: LocalTritonServer, protocol: str, options: dict[str, Any], id_type: str
) -> None:
    r, ledger = measure_ledger(
        server, concurrency=3, sequence_length=4, protocol=protocol, workers=1, **options
    )
    check_sequences(r, ledger, length=4, slots=3)
    assert {k.split(":")[0] for k in ledger} == {id_type}
    assert r.workload.describe() == f"conc=3 batch=1 {protocol} seq=4"
    assert r.sequence_slots == 16  # max_candidate_sequences of the oldest strategy
    assert not any("sequence" in n for n in r.notes)


def test_worker_processes_never_share_a_sequence_id(server: LocalTritonServer) -> None:
    r, ledger = measure_ledger(server, concurrency=4, sequence_length=3, workers=2)
    assert r.workers == 2
    check_sequences(r, ledger, length=3, slots=4)


def test_default_length_is_perf_analyzers_and_the_result_says_so(
    server: LocalTritonServer,
) -> None:
    r, ledger = measure_ledger(server, concurrency=2, workers=1)
    assert (r.workload.sequence_length, r.workload.sequence_length_variation) == (20, 0.2)
    assert r.workload.describe() == "conc=2 batch=1 grpc seq=20+-20%"
    assert r.seed == 0  # the lengths are drawn from the seed
    assert any("perf_analyzer's default of 20 requests per sequence +-20%" in n for n in r.notes)
    full = Counter(e["requests"] for e in ledger.values() if e["requests"] >= 16)
    assert set(full) <= set(range(16, 25)) and len(full) >= 3  # 20 + int(u * 4), varied
    assert all(e["starts"] == e["ends"] == 1 for e in ledger.values())


def test_control_inputs_the_server_cannot_fill_stop_the_measurement_once(
    server: LocalTritonServer,
) -> None:
    """``seq_string_id`` asks for string IDs (CORRID is TYPE_STRING); Triton 2.51 refuses
    every such request. One request is sent, and the error names the control inputs."""
    before = server_requests(server, "seq_string_id")
    with pytest.raises(InputSpecError) as info:
        measure(server, "seq_string_id", sequence_length=3, settings=FAST)
    text = str(info.value)
    assert text.startswith("model 'seq_string_id': the server cannot fill its sequence control")
    assert "CORRID (CONTROL_SEQUENCE_CORRID, TYPE_STRING)" in text
    assert "START (CONTROL_SEQUENCE_START)" in text
    assert "string sequence_id" in text
    assert "unexpected number of string elements" in text  # the server's own words
    assert server_requests(server, "seq_string_id") - before <= 1


@pytest.mark.parametrize(
    ("model", "kwargs", "message"),
    [
        ("simple", {"sequence_length": 5}, "sequence_length=5 applies to sequence models only"),
        (
            "simple",
            {"sequence_length_variation": 0.1},
            "sequence_length_variation=0.1 applies to sequence models only",
        ),
        (LEDGER, {"sequence_length": 0}, "sequence_length must be an integer >= 1"),
        (LEDGER, {"sequence_length_variation": 1.5}, "a fraction in [0, 1) (0.2 = +-20%)"),
        (LEDGER, {"sequence_id_type": "uuid"}, "sequence_id_type must be one of 'auto'"),
        (LEDGER, {"request_rate": 50}, "an open loop cannot drive a sequence model"),
    ],
)
def test_sequence_arguments_that_do_not_fit_are_refused(
    server: LocalTritonServer, model: str, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(InputSpecError, match=f"^model '{model}': ") as info:
        measure(server, model, settings=FAST, **kwargs)
    assert message in str(info.value)


def test_more_sequences_than_slots_are_noted() -> None:
    config = {
        "max_batch_size": 2,
        "sequence_batching": {"direct": {}},
        "instance_group": [{"count": 1}],
    }
    spec = ModelSpec.from_metadata({"name": "m"}, config)
    plan, notes = sequence_plan(spec, 5, None, "auto", request_rate=None, concurrency=3, seed=0)
    assert plan is not None and (plan.length, plan.variation) == (5, 0.0)
    assert notes == (
        "3 sequences in flight on 2 sequence slot(s) (direct strategy): the others wait in"
        " the sequence batcher's backlog, which the server queue time shows",
    )
