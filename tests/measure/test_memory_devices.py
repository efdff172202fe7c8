"""NVML limited to the GPUs given to a container (``--gpus``). No GPU here: a fake pynvml
module stands in for NVML, and says so in its name."""

from __future__ import annotations

import sys
import types

import pytest

from pytest_triton_perf.measure.memory import MemorySampler, NvmlSource, open_nvml


class FakePynvml(types.ModuleType):
    """Three GPUs using 1, 2 and 4 GB; handles are the device indices."""

    UUIDS = ("GPU-aaa", "GPU-bbb", "GPU-ccc")
    USED = (1e9, 2e9, 4e9)

    def __init__(self) -> None:
        super().__init__("pynvml")
        self.shutdowns = 0

    def nvmlInit(self) -> None:
        pass

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlDeviceGetCount(self) -> int:
        return len(self.UUIDS)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        if not 0 <= index < len(self.UUIDS):
            raise RuntimeError(f"Invalid Argument (index {index})")
        return index

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> int:
        if uuid not in self.UUIDS:
            raise RuntimeError("Not Found")
        return self.UUIDS.index(uuid)

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> types.SimpleNamespace:
        return types.SimpleNamespace(used=self.USED[handle])


@pytest.fixture
def fake_nvml(monkeypatch: pytest.MonkeyPatch) -> FakePynvml:
    fake = FakePynvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    return fake


def test_all_devices_by_default(fake_nvml: FakePynvml) -> None:
    assert NvmlSource().used_bytes() == 7e9


def test_devices_by_index_or_uuid(fake_nvml: FakePynvml) -> None:
    assert NvmlSource(["0", "2"]).used_bytes() == 5e9
    assert NvmlSource(["GPU-bbb"]).used_bytes() == 2e9


def test_unknown_device_is_a_reason_and_nvml_is_shut_down(fake_nvml: FakePynvml) -> None:
    source, reason = open_nvml(["GPU-zzz"])
    assert source is None and reason == "Not Found"
    assert fake_nvml.shutdowns == 1


def test_sampler_measures_only_the_given_devices(fake_nvml: FakePynvml) -> None:
    sampler = MemorySampler(None, interval_s=10, gpu_devices=["GPU-ccc"])
    sampler.start()
    peaks = sampler.stop()
    assert peaks.gpu_mb == 4000.0
