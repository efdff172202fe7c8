"""Room in /dev/shm for the Python backend, checked before the local server starts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_triton_perf.errors import ServerStartError
from pytest_triton_perf.server.local import LocalTritonServer
from pytest_triton_perf.server.shm import (
    DEFAULT_REGION_BYTES,
    SHM_DIR,
    check_room,
    python_instances,
    region_bytes,
)
from tests.conftest import EXAMPLE_MODELS, TEST_MODELS

pytestmark = pytest.mark.skipif(not SHM_DIR.is_dir(), reason="no /dev/shm on this system")


def shm_space() -> tuple[int, int]:
    """Free and total bytes of /dev/shm now."""
    stat = os.statvfs(SHM_DIR)
    return stat.f_bavail * stat.f_frsize, stat.f_blocks * stat.f_frsize


def region_arg(size: int) -> str:
    return f"--backend-config=python,shm-default-byte-size={size}"


def model(repo: Path, name: str, config: str) -> None:
    (repo / name / "1").mkdir(parents=True)
    (repo / name / "config.pbtxt").write_text(f'name: "{name}"\n{config}\n')


def test_python_instances_follow_the_model_configs(tmp_path: Path) -> None:
    groups = "instance_group [ { count: 2 }, { count: 3 } ]"
    model(tmp_path, "two_groups", f'backend: "python"\n{groups}')
    model(tmp_path, "no_group", 'backend: "python"')
    model(tmp_path, "onnx", 'backend: "onnxruntime"\ninstance_group [ { count: 4 } ]')
    model(tmp_path, "broken", 'backend: "python"\nthis is not a model config')
    assert python_instances([tmp_path], None) == 2 + 3 + 1
    assert python_instances([tmp_path], ["no_group", "onnx"]) == 1
    assert python_instances([tmp_path], ["broken"]) == 0  # Triton reports it at load
    # The example models: every Python one has one instance (the ensemble has none).
    models = [
        p.parent.name
        for p in EXAMPLE_MODELS.glob("*/config.pbtxt")
        if 'backend: "python"' in p.read_text()
    ]
    assert "pipeline" not in models
    assert python_instances([EXAMPLE_MODELS], None) == len(models) > 0
    assert python_instances([EXAMPLE_MODELS, TEST_MODELS], ["simple", "dynamic"]) == 2


def test_region_size_comes_from_the_backend_config() -> None:
    assert region_bytes([]) == DEFAULT_REGION_BYTES == 1 << 20
    assert region_bytes(["--log-verbose=1", region_arg(8 << 20)]) == 8 << 20
    assert region_bytes([region_arg(2 << 20), region_arg(3 << 20)]) == 3 << 20
    assert region_bytes(["--backend-config=onnxruntime,shm-default-byte-size=5"]) == 1 << 20


def test_regions_that_cannot_fit_refuse_the_start_naming_sizes_and_remedy() -> None:
    _, total = shm_space()
    with pytest.raises(ServerStartError) as info:
        check_room([EXAMPLE_MODELS], ["simple"], [region_arg(total + (1 << 20))])
    text = str(info.value)
    assert text.startswith("not enough shared memory: /dev/shm has ")
    assert f"of {total / (1 << 20):.1f} MiB" in text
    assert f"{(total + (1 << 20)) / (1 << 20):.1f} MiB (shm-default-byte-size)" in text
    assert "for the 1 Python model instance(s) here" in text
    assert "docker run --shm-size=1g" in text
    assert "--backend-config=python,shm-default-byte-size=BYTES" in text


def test_regions_without_room_to_grow_are_warned_of() -> None:
    free, _ = shm_space()
    # Fits, but cannot double: said, not refused (other processes move free a little).
    (line,) = check_room([EXAMPLE_MODELS], ["simple"], [region_arg(int(free * 0.7))])
    assert line.startswith("triton-perf: little shared memory: /dev/shm has ")
    assert "docker run --shm-size=1g" in line


def test_room_enough_or_no_python_model_says_nothing(tmp_path: Path) -> None:
    assert check_room([EXAMPLE_MODELS], ["simple"], []) == []
    model(tmp_path, "onnx", 'backend: "onnxruntime"')
    assert check_room([tmp_path], None, [region_arg(1 << 50)]) == []
    assert check_room([EXAMPLE_MODELS], None, [], shm_dir=tmp_path / "absent") == []


def test_the_launcher_refuses_before_starting_anything(tmp_path: Path) -> None:
    _, total = shm_space()
    srv = LocalTritonServer(
        [EXAMPLE_MODELS], models=["simple"], extra_args=[region_arg(total + (1 << 20))]
    )
    with pytest.raises(ServerStartError, match="not enough shared memory: /dev/shm has "):
        srv.start()
    assert srv.pid is None
