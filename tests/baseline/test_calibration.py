"""The machine's A/A calibration: ``triton-perf calibrate`` run for real on the embedded
server, what it stores, and how A/B mode's analysis uses it."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_triton_perf.baseline import calibration
from pytest_triton_perf.baseline.compare import GateSettings
from pytest_triton_perf.baseline.epochs import Offset
from pytest_triton_perf.baseline.paired import PairedAnalysis
from pytest_triton_perf.errors import BaselineError
from tests.report.factory import make_result

REPO = Path(__file__).resolve().parents[2]
KEY = {"cpu": "Test CPU", "triton": "2.51.0"}


def test_a_stored_calibration_is_read_back_per_model_and_for_the_machine(tmp_path: Path) -> None:
    calibration.save(tmp_path, KEY, "busy", {"p50_ms": Offset(0.0004, 10)})
    calibration.save(
        tmp_path, KEY, "dicty", {"p50_ms": Offset(0.0009, 8), "p95_ms": Offset(0.01, 8)}
    )
    assert calibration.offsets(tmp_path, KEY, "busy") == {"p50_ms": Offset(0.0004, 10)}
    # A model never calibrated gets the machine's largest per metric.
    other = calibration.offsets(tmp_path, KEY, "sleepy")
    assert other == {"p50_ms": Offset(0.0009, 8), "p95_ms": Offset(0.01, 8)}
    # Another machine's key finds nothing; no directory, nothing.
    assert calibration.offsets(tmp_path, {**KEY, "cpu": "Other"}, "busy") == {}
    assert calibration.offsets(None, KEY, "busy") == {}


def test_a_corrupt_calibration_file_is_an_error_naming_it_and_is_left_alone(
    tmp_path: Path,
) -> None:
    path = calibration.path(tmp_path, KEY)
    path.parent.mkdir(parents=True)
    path.write_text('{"schema_version": 99}')
    with pytest.raises(BaselineError, match=r"calibration file .*calibration\.json"):
        calibration.offsets(tmp_path, KEY, "busy")
    with pytest.raises(BaselineError):
        calibration.save(tmp_path, KEY, "busy", {"p50_ms": Offset(0.0, 5)})
    assert path.read_text() == '{"schema_version": 99}'


def epochs_of(deltas: list[float]) -> tuple[list, list, list[int]]:
    """Four pairs per epoch of ``sleepy`` results, the candidate ``1 + delta`` slower."""
    ref, cand, sizes = [], [], []
    for e, d in enumerate(deltas):
        for i in range(4):
            ref.append(make_result(seed=100 * e + i, windows=1, spread=0.02))
            cand.append(
                make_result(seed=100 * e + i + 50, windows=1, spread=0.02, median_ms=20 * (1 + d))
            )
        sizes.append(4)
    return ref, cand, sizes


def test_the_analysis_uses_the_calibration_and_says_so() -> None:
    ref, cand, sizes = epochs_of([0.0, 0.0, 0.0])
    gate = GateSettings()
    calibrated = PairedAnalysis(gate, (3,), offsets={"p50_ms": Offset(1e-5, 12)})
    calibrated.look(ref, cand, sizes)
    alone = PairedAnalysis(gate, (3,))
    alone.look(ref, cand, sizes)
    assert calibrated.offset_how["p50_ms"] == "calibration"
    assert alone.offset_how["p50_ms"] == "epochs"
    # With 2 degrees of freedom the epochs alone give a far wider interval.
    assert calibrated.decisions["p50_ms"].c < alone.decisions["p50_ms"].c
    comps = {
        c.metric: c
        for c in calibrated.comparisons(ref, cand, pairs=12, elapsed_s=30, stopped="decided")
    }
    assert "offset from the stored calibration" in comps["p50_ms"].note
    assert "3 epochs" in comps["p50_ms"].note


def test_triton_perf_calibrate_measures_two_copies_and_stores_the_offsets(tmp_path: Path) -> None:
    models = tmp_path / "models"
    shutil.copytree(REPO / "example_repo" / "models" / "sleepy", models / "sleepy")
    proc = subprocess.run(
        [
            sys.executable, "-m", "pytest_triton_perf", "calibrate", "sleepy",
            "--model-repository", str(models), "--baseline-dir", str(tmp_path / "b"),
            "--epochs", "4", "--pairs", "2", "--quiet",
        ],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "A/A calibration of 'sleepy': 4 load epochs" in proc.stdout
    assert "p50_ms: offset sd" in proc.stdout
    (written,) = (tmp_path / "b").glob("*/calibration.json")
    doc = json.loads(written.read_text())
    p50 = doc["models"]["sleepy"]["metrics"]["p50_ms"]
    assert p50["epochs"] == 4 and math.isfinite(p50["tau2"]) and p50["tau2"] >= 0
    assert doc["models"]["sleepy"]["pairs_per_epoch"] == [2, 2, 2, 2]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--epochs", "2"], "--epochs=2: at least 4 epochs are accepted"),
        (["--pairs", "1"], "--pairs=1: at least 2 pairs per epoch are accepted"),
    ],
)
def test_calibrate_names_a_bad_value(tmp_path: Path, args: list[str], message: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest_triton_perf", "calibrate", "sleepy",
         "--model-repository", str(REPO / "example_repo" / "models"), *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2 and message in proc.stderr
