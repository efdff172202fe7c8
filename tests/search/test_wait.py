"""The held-out question of issue 23 through the plugin: a Python model that waits 10 ms
per request (``benchmarks/models/wait``), ``instance_count`` 1 to 3, the most load within
p99 <= 60 ms. Three instances serve three times as much, so the search must pick them;
the predictive default answers with one level at full length."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.conftest import REPO
from tests.test_gating import pytest_in

HELD_OUT = """
import pytest

@pytest.mark.sla(p99_ms=60)
def test_wait(triton_perf):
    found = triton_perf.search("wait", space={"instance_count": [1, 2, 3]}, objective="capacity")
    assert found.best.values == {"instance_count": 3}, found.to_dict()
"""


def test_the_search_picks_three_instances_of_a_model_that_waits(tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(
        REPO / "benchmarks" / "models" / "wait",
        project / "models" / "wait",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    (project / "pytest.ini").write_text("[pytest]\ntriton_model_repository = models\n")
    (project / "test_held_out.py").write_text(HELD_OUT)
    out = project / "results.json"
    run = pytest_in(project, f"--triton-perf-json={out}")
    assert run.returncode == 0, run.stdout[-3000:]
    search = json.loads(out.read_text())["measurements"][0]["analysis"]["search"]
    assert search["strategy"] == "predict" and search["best"] == "wait__cfg2"
    best = search["candidates"][0]
    # 3 instances of a 10 ms wait: 300/s at most; the capacity measured within the SLA.
    assert 200 < best["capacity"] <= 310 and best["p99_ms"] <= 60
    assert best["prediction"]["capacity"] is not None
    # One or two instances could not beat it even 15% up: pruned on their prediction.
    assert [c["status"] for c in search["candidates"][1:]] == ["pruned", "pruned"]
    assert search["cost"]["levels"] <= 3 + 2 + 6  # probes, a check (and one below), or
    # the full search where the check disagreed
