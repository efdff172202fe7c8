"""Memory footprints against the suite's real embedded server: `hog` holds a known amount of
host memory (200 MB, a config parameter, every page written), `simple` none beyond its
backend stub, so their host deltas differ by about that amount. Without a GPU the GPU part
says why it is unavailable."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import tritonclient.http

from pytest_triton_perf.errors import ArgumentError, ModelNotReadyError
from pytest_triton_perf.footprint import Footprint, MemorySample, measure_footprint
from pytest_triton_perf.measure.engine import measure
from pytest_triton_perf.measure.memory import open_nvml
from pytest_triton_perf.server.local import LocalTritonServer
from tests.conftest import EXAMPLE_MODELS
from tests.test_colocation import run_inner

HOG_MB = 200  # tests/models/hog/config.pbtxt: alloc_mb


def _loaded(server: LocalTritonServer) -> set[str]:
    return {str(m["name"]) for m in server.repository_index() if m.get("state") == "READY"}


def test_host_delta_grows_by_what_the_model_allocates(server: LocalTritonServer) -> None:
    """hog, not loaded, is loaded as itself and unloaded again; simple, loaded, as a fresh
    copy: the difference of their host deltas is hog's allocation."""
    client = tritonclient.http.InferenceServerClient(server.http_url)
    client.unload_model("hog")  # returns at once: the footprint waits for a quiet server
    try:
        hog = measure_footprint(server, "hog", measure=measure)
        assert hog.loaded_as == "hog" and not server.model_ready("hog")
        simple = measure_footprint(server, "simple", measure=measure)
    finally:
        client.load_model("hog")
        client.close()
    assert simple.loaded_as == "simple__fp" and "simple__fp" not in _loaded(server)
    assert "a fresh copy was loaded as 'simple__fp'" in simple.notes[0]
    assert hog.cpu_memory_mb is not None and simple.cpu_memory_mb is not None
    # PSS of a dozen processes moves by some MB between readings: a wide margin.
    assert hog.cpu_memory_mb - simple.cpu_memory_mb == pytest.approx(HOG_MB, rel=0.25)
    assert hog.cpu_memory_mb >= 0.8 * HOG_MB
    assert [s.stage for s in hog.samples] == ["before load", "after load", "under load"]
    assert hog.stage_delta_mb("after load") == pytest.approx(HOG_MB, rel=0.3)
    assert "PSS of the server process" in hog.cpu_source
    assert hog.result is not None and hog.result.requests > 0
    requests = hog.placement()["kubernetes"]["resources"]["requests"]
    assert requests["memory"] == f"{math.ceil(hog.cpu_memory_mb * 1e6 / 2**20)}Mi"
    nvml, why = open_nvml()
    if nvml is None:  # no GPU here: the GPU part says why, and the placement has no GPU
        assert hog.gpu_memory_mb is None
        reason = hog.unavailable_reason("gpu_memory_mb")
        assert reason is not None and "NVML" in reason and str(why) in reason
        assert "nvidia.com/gpu" not in requests
        assert hog.placement()["tms"]["gpu_memory_gb"] is None
    else:  # a CPU model adds (next to) no GPU memory, measured per device
        nvml.close()
        assert hog.gpu_memory_mb is not None and hog.gpu_memory_mb_by_device
        assert abs(hog.gpu_memory_mb) < 100


def test_a_model_the_server_does_not_have_fails_naming_it(server: LocalTritonServer) -> None:
    with pytest.raises(ModelNotReadyError, match="footprint of model 'no_such_model'"):
        measure_footprint(server, "no_such_model", measure=measure)


def test_a_copy_without_its_files_is_refused_naming_what_to_give(
    server: LocalTritonServer, tmp_path: Path
) -> None:
    with pytest.raises(ArgumentError, match=r"footprint of model 'simple': .*model_repository="):
        measure_footprint(server, "simple", measure=measure, model_repository=tmp_path)


def test_placement_snippet_declares_gpu_memory_for_tms_and_kubernetes() -> None:
    """The snippet from figures (a GPU machine's footprint, built by hand)."""
    fp = Footprint(
        model="bert",
        loaded_as="bert__fp",
        cpu_memory_mb=1500.0,
        gpu_memory_mb=2100.0,
        gpu_memory_mb_by_device=(("0", 2100.0),),
        samples=(MemorySample("before load", 1.0e9, (("0", 1.0e9),)),),
    )
    place = fp.placement()
    resources = place["kubernetes"]["resources"]
    assert resources["requests"] == {"memory": "1431Mi", "nvidia.com/gpu": 1}
    assert place["tms"]["gpu_memory_gb"] == 3
    assert place["tms"]["lease"].endswith("--triton-pool <pool> --quota 3")
    assert fp.placement(headroom=0.5)["tms"]["gpu_memory_gb"] == 4
    assert fp.to_dict()["placement"] == place


TESTS = """
import pytest

@pytest.mark.sla(max_cpu_memory_mb=5)
def test_footprint(triton_perf):
    fp = triton_perf.footprint("simple", concurrency=2)
    assert fp.loaded_as == "simple__fp" and fp.cpu_memory_mb > 5
"""


def test_a_footprint_is_recorded_reported_and_gated_by_its_memory_bounds(
    server: LocalTritonServer, tmp_path: Path
) -> None:
    """Through the plugin, on the suite's server reached by URL (its process found by the
    port it listens on): max_cpu_memory_mb bounds the footprint's host delta."""
    (tmp_path / "test_fp.py").write_text(TESTS)
    out = tmp_path / "out"
    run = run_inner(
        tmp_path,
        server,
        "-v",
        f"--triton-model-repository={EXAMPLE_MODELS}",  # the copy's files
        f"--triton-perf-json={out}/results.json",
        f"--triton-perf-markdown={out}/summary.md",
    )
    assert "test_fp.py::test_footprint FAILED" in run.stdout, run.stdout[-3000:]
    assert "max_cpu_memory_mb" in run.stdout and "<= 5" in run.stdout
    assert "footprint of simple (loaded as simple__fp): host +" in run.stdout
    (record,) = json.loads((out / "results.json").read_text())["measurements"]
    assert record["label"] == "simple footprint" and record["result"]["footprint"] is True
    fp = record["analysis"]["footprint"]
    assert record["result"]["cpu_memory_mb"] == fp["cpu_memory_mb"] > 5
    assert fp["workload"] == "conc=2 batch=1 grpc"
    assert fp["placement"]["kubernetes"]["resources"]["requests"]["memory"].endswith("Mi")
    (check,) = [s for s in record["sla"] if s["key"] == "max_cpu_memory_mb"]
    assert check["passed"] is False and check["value"] == fp["cpu_memory_mb"]
    summary = (out / "summary.md").read_text()
    assert "### Memory footprint" in summary and "resources:  # Kubernetes container" in summary
    assert "simple__fp" not in {
        str(m["name"]) for m in server.repository_index() if m.get("state") == "READY"
    }
