"""A remote server shared with other traffic: the measurement says it was not idle, and
the baseline comparison does not decide on such a measurement."""

from __future__ import annotations

import threading

import numpy as np
import tritonclient.http as httpclient

from pytest_triton_perf.baseline.compare import GateSettings
from pytest_triton_perf.gate import GateContext, Measured, evaluate_test
from pytest_triton_perf.measure.engine import MeasureSettings, measure
from pytest_triton_perf.server.local import LocalTritonServer
from pytest_triton_perf.server.remote import RemoteTritonServer

SHORT = MeasureSettings(warmup_s=0.2, windows=3, window_s=0.3)


def test_other_models_traffic_is_reported(server: LocalTritonServer) -> None:
    remote = RemoteTritonServer(server.http_url, grpc_url=server.grpc_url).start()
    stop = threading.Event()

    def other_team() -> None:
        client = httpclient.InferenceServerClient(server.http_url)
        data = httpclient.InferInput("INPUT0", [1, 16], "FP32")
        data.set_data_from_numpy(np.zeros((1, 16), dtype=np.float32))
        while not stop.is_set():
            client.infer("simple", [data])
        client.close()

    thread = threading.Thread(target=other_team)
    thread.start()
    try:
        busy = measure(remote, "sleepy", settings=SHORT)
    finally:
        stop.set()
        thread.join()
    quiet = measure(remote, "sleepy", settings=SHORT)

    traffic = dict(busy.other_traffic)
    assert traffic.get("simple", 0) > 0
    assert any("the server was not idle" in n and "simple" in n for n in busy.notes)
    assert quiet.other_traffic == ()

    ctx = GateContext(key={}, environment={}, store=None, gate=GateSettings())
    verdict = evaluate_test("t", None, [Measured(busy, "ab", reference=quiet)], ctx)
    (record,) = verdict.records
    assert {c.verdict for c in record.comparisons} == {"inconclusive"}
    assert "the server was not idle" in record.comparisons[0].note
