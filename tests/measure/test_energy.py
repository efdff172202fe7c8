"""GPU energy per measurement (issue 22, part 7): NVML's total-energy counter read at the
window edges, tokens and inferences per joule. The reason without a GPU is NVML's own
answer on this machine; the arithmetic runs on a fake pynvml module (no GPU exists here),
which says so in its name."""

from __future__ import annotations

import dataclasses
import sys
import types

import pytest

from pytest_triton_perf import sla
from pytest_triton_perf.baseline.ab import merge_blocks
from pytest_triton_perf.measure import energy
from pytest_triton_perf.measure.energy import Energy, EnergyMeter, meter_for
from pytest_triton_perf.report.markdown import render_markdown
from pytest_triton_perf.report.terminal import render_terminal
from pytest_triton_perf.server.remote import RemoteTritonServer
from tests.measure.test_memory_devices import FakePynvml
from tests.report.factory import make_record, make_result, make_stream_result


class FakeEnergyPynvml(FakePynvml):
    """The fake's three GPUs with total-energy counters (millijoules) that a test advances."""

    def __init__(self, supported: bool = True) -> None:
        super().__init__()
        self.mj = [5_000_000, 7_000_000, 9_000_000]
        self.supported = supported

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: int) -> int:
        if not self.supported:
            raise RuntimeError("Not Supported")
        return self.mj[handle]


@pytest.fixture
def fake_energy_nvml(monkeypatch: pytest.MonkeyPatch) -> FakeEnergyPynvml:
    fake = FakeEnergyPynvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    return fake


def test_the_energy_is_the_counter_difference_on_the_servers_gpus(
    fake_energy_nvml: FakeEnergyPynvml,
) -> None:
    meter = EnergyMeter(["0", "GPU-ccc"])
    meter.open()
    meter.start()
    fake_energy_nvml.mj[0] += 150_000  # 150 J on GPU 0, 50 J on GPU 2, GPU 1 not ours
    fake_energy_nvml.mj[1] += 999_000
    fake_energy_nvml.mj[2] += 50_000
    found = meter.stop()
    assert found is not None and meter.reason is None
    assert found.joules == pytest.approx(200.0) and found.per_device == (150.0, 50.0)
    assert found.devices == ("0", "GPU-ccc") and found.seconds > 0
    assert fake_energy_nvml.shutdowns == 1
    assert meter.unavailable(streaming=True) == {}


def test_a_gpu_without_the_counter_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", FakeEnergyPynvml(supported=False))
    meter = EnergyMeter()
    meter.open()
    meter.start()
    assert meter.stop() is None
    assert meter.reason is not None and meter.reason.startswith("the GPU has no total-energy")
    assert "Volta or newer" in meter.reason
    assert set(meter.unavailable(streaming=False)) == {"energy_j", "inferences_per_joule"}


def test_no_gpu_here_is_the_reason_nvml_gives() -> None:
    """The real pynvml on this machine (no NVIDIA driver): the figure is absent, with NVML's
    answer. On a machine with a GPU the counter is read instead."""
    meter = meter_for(types.SimpleNamespace(http_url="127.0.0.1:8000"))
    meter.open()
    meter.start()
    found = meter.stop()
    if found is None:
        assert meter.reason is not None
        assert meter.reason.startswith("no NVIDIA GPU: NVML not found ("), meter.reason
        assert meter.unavailable(streaming=True)["tokens_per_joule"] == meter.reason
    else:
        assert found.joules >= 0 and found.devices


def test_a_remote_server_or_a_group_cannot_be_metered() -> None:
    remote = RemoteTritonServer("triton.example.com:8000")  # not started: no network
    reason = meter_for(remote).reason
    assert reason is not None and reason.startswith("a remote server (triton.example.com): its")
    assert meter_for(RemoteTritonServer("127.0.0.1:8000")).reason is None  # this host's GPUs
    group = meter_for(remote, models=2).reason
    assert group is not None and group.startswith("models measured together share the GPUs")


def with_energy(result, joules: float = 200.0):  # type: ignore[no-untyped-def]
    return dataclasses.replace(result, energy=Energy(joules, 2.0, ("0",), (joules,)))


def test_tokens_and_inferences_per_joule() -> None:
    streamed = with_energy(make_stream_result())
    assert streamed.stream is not None and streamed.stream.output_tokens
    assert streamed.energy_j == 200.0
    assert streamed.tokens_per_joule == pytest.approx(streamed.stream.output_tokens / 200.0)
    inferences = sum(w.inferences for w in streamed.windows)
    assert streamed.inferences_per_joule == pytest.approx(inferences / 200.0)
    # Tokens not counted: the responses stand for them, as TPOT counts them.
    plain_tokens = with_energy(make_stream_result(token_output=None))
    assert plain_tokens.stream is not None and plain_tokens.stream.output_tokens is None
    assert plain_tokens.tokens_per_joule == pytest.approx(plain_tokens.stream.responses / 200.0)
    # A request/response model: inferences per joule only.
    plain = with_energy(make_result())
    assert plain.tokens_per_joule is None and plain.inferences_per_joule is not None
    d = streamed.to_dict()
    assert d["energy"]["joules"] == 200.0 and d["energy"]["watts"] == 100.0
    assert d["tokens_per_joule"] == streamed.tokens_per_joule
    assert streamed.summary()["tokens_per_joule"] == streamed.tokens_per_joule


def test_an_ab_arm_sums_its_blocks_energy() -> None:
    blocks = [with_energy(make_stream_result(seed=s, windows=1), 10.0 * s) for s in (1, 2)]
    arm = merge_blocks(blocks)
    assert arm.energy is not None and arm.energy.joules == pytest.approx(30.0)
    assert arm.energy.seconds == pytest.approx(4.0)
    assert energy.merge([blocks[0].energy, None]) is None


def test_min_tokens_per_joule_fails_where_there_is_no_figure() -> None:
    spec = sla.SlaSpec(bounds=(("min_tokens_per_joule", 5.0),))
    why = "no NVIDIA GPU: NVML not found (NVML Shared Library Not Found)"
    absent = dataclasses.replace(
        make_stream_result(),
        unavailable=(("energy_j", why), ("tokens_per_joule", why)),
    )
    (check,) = [c for c in sla.evaluate(spec, [absent]) if c.key == "min_tokens_per_joule"]
    assert not check.passed and check.note == f"unavailable: {why}"
    present = with_energy(make_stream_result(), joules=1.0)
    (check,) = [c for c in sla.evaluate(spec, [present]) if c.key == "min_tokens_per_joule"]
    assert check.passed and check.value == present.tokens_per_joule


def test_reports_show_energy_where_they_show_gpu_memory() -> None:
    record = make_record(with_energy(make_stream_result()))
    table = render_terminal([record], verbosity=1)
    assert "GPU J" in table[0] and "tokens/J" in table[0], table[0]
    plain = render_terminal([make_record(make_stream_result())], verbosity=1)
    assert "GPU J" not in plain[0]
    md = render_markdown([record])
    assert "| GPU 200.0 J (13.20 tokens/J) |" in md
