"""Any KServe V2 server through ``--triton-url``: a scikit-learn model on a real MLServer 1.7,
measured and gated over HTTP and gRPC from the model's metadata alone, the figures only
Triton gives (model configuration, statistics, nv_* metrics) marked unavailable with why.

One server for the module (tests/kserve/conftest.py), started in about 3 s; each inner run
measures with the suite's short windows.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_triton_perf.errors import InputSpecError, ModelNotReadyError
from pytest_triton_perf.load.model_info import fetch_model_spec
from pytest_triton_perf.measure.plan import prepare
from pytest_triton_perf.server.protocol import MODEL_CONFIGURATION, STATISTICS
from pytest_triton_perf.server.remote import RemoteTritonServer
from tests.conftest import FAST_OPTIONS
from tests.kserve.conftest import INPUT, MODEL, MLServer

GATE = f"""
import pytest


@pytest.mark.sla(p99_ms=2000, min_throughput=5)
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_iris(triton_perf, protocol):
    result = triton_perf.measure(
        "{MODEL}", concurrency=2, protocol=protocol, shapes={{"{INPUT}": [1, 4]}}
    )
    assert result.errors == 0, result.first_error
"""


def _options(mlserver: MLServer) -> list[str]:
    return [
        f"--triton-url={mlserver.http_url}",
        f"--triton-grpc-url={mlserver.grpc_url}",
        *FAST_OPTIONS,
        "-p",
        "no:cacheprovider",
    ]


def test_remote_handle_names_the_server_and_its_models(mlserver: MLServer) -> None:
    """The launcher takes MLServer for what it is: live, its model ready (MLServer has the
    repository index), its metrics at HTTP + 2, and no Triton extension declared."""
    remote = RemoteTritonServer(mlserver.http_url, models=[MODEL]).start()
    assert remote.models == (MODEL,)
    assert remote.metrics_url == mlserver.metrics_url
    assert remote.server_info.name == "mlserver"
    assert remote.server_info.version.startswith("1.7")
    assert remote.server_info.missing([MODEL_CONFIGURATION, STATISTICS]) == [
        MODEL_CONFIGURATION,
        STATISTICS,
    ]
    assert remote.describe().startswith("mlserver-1.7")
    assert "KServe V2" in remote.describe()


def test_spec_from_the_metadata_alone(mlserver: MLServer) -> None:
    """No ``/config`` on MLServer: the spec is the metadata's, without batching."""
    spec = fetch_model_spec(mlserver.http_url, MODEL)
    assert not spec.configured
    assert spec.max_batch_size == 0
    assert [(t.name, t.datatype, t.dims) for t in spec.inputs] == [(INPUT, "FP32", (-1, 4))]


def test_what_the_server_cannot_do_is_said_before_any_load(mlserver: MLServer) -> None:
    """A model it does not serve, shared memory: errors that name the server's answer."""
    with pytest.raises(
        ModelNotReadyError, match=r"HTTP 404: Model nope not found.*ready models: iris"
    ):
        fetch_model_spec(mlserver.http_url, "nope")
    remote = RemoteTritonServer(mlserver.http_url, models=[MODEL]).start()
    with pytest.raises(InputSpecError, match="has no Triton system_shared_memory extension"):
        prepare(remote, MODEL, shared_memory="system", shapes={INPUT: [1, 4]})


def test_sla_gate_and_history_mode_over_http_and_grpc(
    pytester: pytest.Pytester, mlserver: MLServer, tmp_path: Path
) -> None:
    """The SLA gate passes over both protocols, the results and the summary saying which
    figures this server cannot give and why; its baselines saved, the next run compares
    with them (history mode: the comparison that works on a KServe V2 server). The
    baseline key names the server, never taken for a Triton release."""
    pytester.makepyfile(test_gate=GATE)
    baselines = tmp_path / "baselines"
    results = tmp_path / "results.json"
    result = pytester.runpytest_inprocess(
        *_options(mlserver),
        "--triton-perf-save",
        f"--triton-perf-baseline-dir={baselines}",
        f"--triton-perf-json={results}",
    )
    result.assert_outcomes(passed=2)
    out = result.stdout.str()
    assert "note: KServe V2 server mlserver 1.7" in out
    assert "2 measurements" in out
    records = json.loads(results.read_text())["measurements"]
    assert len(records) == 2
    for record in records:
        res = record["result"]
        assert res["errors"] == 0 and res["throughput"] > 5
        assert res["server"] is None
        why = res["unavailable"]
        assert "no Triton statistics extension" in why["server"]
        assert "no Triton statistics extension" in why["other_traffic"]
        assert "no Triton model_configuration extension" in why["model_configuration"]
        # MLServer's metrics answer at HTTP + 2, but they are not Triton's.
        assert "are not Triton's" in why["cpu_memory_mb"]
        assert "are not Triton's" in why["gpu_memory_mb"]
        assert any("unavailable: model configuration, server statistics" in n for n in res["notes"])
    (key_dir,) = [p for p in baselines.iterdir() if p.is_dir()]
    assert "mlserver-1.7" in key_dir.name

    compared = pytester.runpytest_inprocess(
        *_options(mlserver),
        "--triton-perf-compare",
        "--triton-perf-compare-windows=2",
        f"--triton-perf-baseline-dir={baselines}",
        "--triton-perf-no-baseline=fail",
        f"--triton-perf-json={results}",
    )
    compared.assert_outcomes(passed=2)
    records = json.loads(results.read_text())["measurements"]
    # Each measurement found its baseline and was judged (short windows on a busy machine
    # may leave a verdict inconclusive, which does not fail the build).
    assert [r["baseline"]["status"] for r in records] == ["compared", "compared"]
    assert all(r["verdict"] in ("pass", "inconclusive") for r in records), records


def test_ab_mode_says_to_use_history_mode(pytester: pytest.Pytester, mlserver: MLServer) -> None:
    """A/B mode loads a copy of the reference through Triton's repository API: on MLServer it
    fails at once, naming what is missing and the mode that works."""
    pytester.makepyfile(test_gate=GATE)
    result = pytester.runpytest_inprocess(
        *_options(mlserver), f"--triton-perf-baseline-repo={mlserver.models}", "-k", "http"
    )
    result.assert_outcomes(failed=1, deselected=1)
    out = result.stdout.str()
    assert "A/B mode needs Triton's model_repository and model_configuration" in out
    assert "--triton-perf-save, then compare with --triton-perf-compare" in out
