"""GPU energy of a measurement, from NVML's total-energy counter.

NVML keeps, per GPU, the energy consumed since the driver was loaded
(``nvmlDeviceGetTotalEnergyConsumption``, millijoules, Volta and newer). The engine reads it
on every GPU the server uses right before the first window opens and right after the last
one closes; the difference is the energy of the measured windows. Output tokens (streaming
models) or inferences per joule then follow from the figures counted in the same windows.

What the figure is: the whole device's energy, idle power included, of every GPU the server
was given (a container's ``--gpus``; otherwise every GPU of this host), including anything
else running on those GPUs meanwhile. NVML refreshes the counter every few tens of
milliseconds, so windows of a second or more keep its granularity below a few percent.

Where there is nothing to read, the figure is None with the reason, never 0: no NVIDIA
driver (NVML not found), a GPU without the counter (pre-Volta: not supported), a server on
another host (its GPUs are not this machine's), models measured together (the energy is the
group's, not one model's).
"""

from __future__ import annotations

import functools
import ipaddress
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pytest_triton_perf.urls import parse_url

if TYPE_CHECKING:  # results import Energy: NVML's source only where a meter reads
    from pytest_triton_perf.measure.memory import NvmlSource

#: The figures energy gives, as ``PerfResult.unavailable`` names them.
FIGURES = ("energy_j", "tokens_per_joule", "inferences_per_joule")


@dataclass(frozen=True)
class Energy:
    """Energy the server's GPUs consumed over a measurement's windows."""

    #: Joules, summed over ``devices``.
    joules: float
    #: Seconds between the two readings of the counter.
    seconds: float
    #: The GPUs read, by NVML index or UUID.
    devices: tuple[str, ...]
    #: Joules per GPU, in the order of ``devices``.
    per_device: tuple[float, ...] = ()

    @property
    def watts(self) -> float | None:
        """Mean power over the windows (None for an empty span)."""
        return self.joules / self.seconds if self.seconds > 0 else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        return {
            "joules": self.joules,
            "seconds": self.seconds,
            "watts": self.watts,
            "devices": list(self.devices),
            "per_device_j": list(self.per_device),
        }


def merge(parts: Sequence[Energy | None]) -> Energy | None:
    """One arm's energy from its blocks' (A/B mode): joules and seconds summed; None
    unless every block has energy of the same GPUs."""
    present = [p for p in parts if p is not None]
    if not present or len(present) != len(parts):
        return None
    if any(p.devices != present[0].devices for p in present):
        return None
    per = tuple(sum(p.per_device[i] for p in present) for i in range(len(present[0].devices)))
    return Energy(
        sum(p.joules for p in present), sum(p.seconds for p in present), present[0].devices, per
    )


def _open_nvml(devices: Sequence[str] | None) -> tuple[NvmlSource | None, str | None]:
    from pytest_triton_perf.measure.memory import open_nvml

    return open_nvml(devices)


def _reason(error: str) -> str:
    """What an NVML failure means for the energy figure."""
    if "not found" in error.lower() or "driver not loaded" in error.lower():
        return f"no NVIDIA GPU: NVML not found ({error})"
    if "not supported" in error.lower():
        return (
            f"the GPU has no total-energy counter (NVML: {error}; "
            f"nvmlDeviceGetTotalEnergyConsumption needs Volta or newer)"
        )
    return f"NVML: {error}"


class EnergyMeter:
    """Reads the energy counter of the server's GPUs at :meth:`start` and :meth:`stop`.

    ``reason`` holds why there is no figure (None: the meter reads). ``nvml_factory``
    opens NVML on the GPUs (tests give a fake, where no GPU exists)."""

    def __init__(
        self,
        devices: Sequence[str] | None = None,
        *,
        reason: str | None = None,
        nvml_factory: Callable[[], tuple[NvmlSource | None, str | None]] | None = None,
    ) -> None:
        self.reason = reason
        self._devices = devices
        self._factory = nvml_factory or functools.partial(_open_nvml, devices)
        self._nvml: NvmlSource | None = None
        self._start: tuple[int, Mapping[str, int]] | None = None
        self.energy: Energy | None = None

    def open(self) -> None:
        """Open NVML (slow on some drivers: call it from a thread before the windows)."""
        if self.reason is not None:
            return
        self._nvml, error = self._factory()
        if self._nvml is None:
            self.reason = _reason(error or "no reading")

    def start(self) -> None:
        """The first reading, as the first window opens."""
        self._start = self._read()

    def stop(self) -> Energy | None:
        """The second reading, as the last window closes; the energy between the two."""
        end = self._read()
        start, self._start = self._start, None
        if start is not None and end is not None:
            (t0, e0), (t1, e1) = start, end
            per = tuple((e1[d] - e0[d]) / 1e3 for d in e0)
            if any(j < 0 for j in per):
                self.reason = "the energy counter went backwards (the driver was reloaded)"
            else:
                self.energy = Energy(sum(per), (t1 - t0) / 1e9, tuple(e0), per)
        self.close()
        return self.energy

    def close(self) -> None:
        """Shut NVML down (idempotent)."""
        if self._nvml is not None:
            self._nvml.close()
            self._nvml = None

    def _read(self) -> tuple[int, Mapping[str, int]] | None:
        if self._nvml is None or self.reason is not None:
            return None
        try:
            reading = self._nvml.energy_mj()
        except Exception as e:
            self.reason = _reason(str(e) or type(e).__name__)
            self.close()
            return None
        return time.perf_counter_ns(), reading

    def unavailable(self, streaming: bool) -> dict[str, str]:
        """Why each energy figure has no value (empty when there is energy)."""
        if self.energy is not None:
            return {}
        why = self.reason or "the energy counter was not read"
        names = FIGURES if streaming else tuple(f for f in FIGURES if f != "tokens_per_joule")
        return dict.fromkeys(names, why)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def meter_for(endpoints: Any, models: int = 1) -> EnergyMeter:
    """The meter of a measurement of ``models`` models on ``endpoints`` (a server handle):
    its GPUs (``gpu_devices`` of a container given some; otherwise every GPU of this host),
    or a meter that only says why there is nothing to read."""
    if models > 1:
        return EnergyMeter(
            reason="models measured together share the GPUs: the energy is the group's, not "
            "one model's (measure a model alone for its energy)"
        )
    if getattr(endpoints, "kind", None) == "remote":
        host, _ = parse_url(endpoints.http_url, option="--triton-url")
        if not _loopback(host):
            return EnergyMeter(
                reason=f"a remote server ({host}): its GPUs cannot be metered from this "
                f"machine (run the tests on the server's host, or start the server here)"
            )
    return EnergyMeter(getattr(endpoints, "gpu_devices", None))
