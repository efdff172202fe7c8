"""Request tensors through shared memory: Triton's shared-memory extension, as
perf_analyzer's ``--shared-memory=system|cuda``.

Instead of tensor bytes on the socket, each request carries references into regions the
client created and registered with the server: the server reads the inputs from the input
region and writes the outputs into the output region. The requests are still encoded once
(``load.inputs``); only their tensors are replaced by ``shared_memory_region``,
``shared_memory_offset`` and ``shared_memory_byte_size`` parameters, over HTTP, the lean gRPC
client and grpcio alike.

Regions of one measurement (:class:`SharedMemory`): one input region holding every input
set's tensors, and one output region with a place for every output of every set. They are
created once, before any clock starts, registered with the server, and unregistered and
removed by :meth:`SharedMemory.close` when the measurement ends, fails or is interrupted.
Worker processes (``workers``) send the same pre-encoded requests: they share the regions
and never map them, since only the server reads and writes them. Concurrent requests of one
input set write the same place of the output region; a deterministic model writes the same
bytes, and the place is read only after the last response (:meth:`SharedMemory.verify`).

Output sizes come from one request per input set sent over HTTP before the measurement
(:func:`reference_outputs`), whose answer is also what the outputs read back from the region
are compared with. A sequence model is not probed (a request outside a sequence would fail):
its outputs need fixed shapes in its configuration.

``"system"``: POSIX shared memory (``/dev/shm``) through ``tritonclient.utils.shared_memory``;
the server must see this host's ``/dev/shm``: a local server does, a container started with
``--triton-ipc=host`` does, a server on another host cannot. ``"cuda"``: device memory of GPU
0 shared through CUDA IPC (``tritonclient.utils.cuda_shared_memory``, which needs the
cuda-python package), refused on a machine without a GPU.

Region names carry the process id (``triton_perf_<pid>_<n>_in``): :func:`region_names` lists
the ones of a process, and Python's resource tracker unlinks a system region that a killed
process left behind.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import itertools
import json
import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import quote

import numpy as np

from pytest_triton_perf.errors import InputSpecError, MeasurementError
from pytest_triton_perf.load import http_client
from pytest_triton_perf.load.model_info import request_json
from pytest_triton_perf.load.model_spec import ModelSpec, numpy_dtype
from pytest_triton_perf.load.transport import InputTensor, ShmRef
from pytest_triton_perf.server.http import HttpStatusError
from pytest_triton_perf.urls import parse_url

#: What ``measure(shared_memory=...)`` takes: tensors over the socket, or through regions.
ShmKind = Literal["none", "system", "cuda"]
KINDS: tuple[ShmKind, ...] = get_args(ShmKind)
#: Tensors start on this boundary inside a region.
ALIGN = 64
#: Where POSIX shared memory objects live on Linux.
SHM_DIR = Path("/dev/shm")
#: The CUDA device of ``"cuda"`` regions.
CUDA_DEVICE = 0
_PREFIX = "triton_perf_"
_serial = itertools.count()


def region_prefix(pid: int | None = None) -> str:
    """The name every region of process ``pid`` (this one by default) starts with."""
    return f"{_PREFIX}{os.getpid() if pid is None else pid}_"


def region_names(pid: int | None = None, shm_dir: Path = SHM_DIR) -> list[str]:
    """System regions of process ``pid`` (this one by default) present in ``shm_dir``."""
    prefix = region_prefix(pid)
    try:
        return sorted(p.name for p in shm_dir.iterdir() if p.name.startswith(prefix))
    except OSError:
        return []


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this host: a loopback address, or a name that resolves only to
    loopback addresses (``localhost``). A name that does not resolve is not."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    if host.lower() == "localhost":
        return True
    try:
        found = {str(info[4][0]) for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(found) and all(ipaddress.ip_address(a.split("%", 1)[0]).is_loopback for a in found)


def check_kind(model: str, kind: Any) -> str:
    """``kind`` when it is one of :data:`KINDS`; InputSpecError otherwise."""
    if kind not in KINDS:
        raise InputSpecError(
            f"model '{model}': shared_memory must be one of {', '.join(map(repr, KINDS))},"
            f" got {kind!r}"
        )
    return str(kind)


def refusal(kind: str, http_url: str, server_says: str | None = None) -> str | None:
    """Why the server at ``http_url`` cannot use ``kind`` regions of this host (None when
    it can). ``server_says`` is the launcher's own answer where it has one (a container
    with a private /dev/shm); otherwise a server on a loopback address is on this host,
    and any other address is another host's."""
    if server_says:
        return server_says
    host, _ = parse_url(http_url, option="server address")
    if not is_loopback(host):
        return (
            f"the server at {http_url} is not on this host (not a loopback address):"
            f" shared_memory={kind!r} needs a server that maps this host's"
            f" {'/dev/shm' if kind == 'system' else 'GPU memory'}; measure over the socket"
            " (shared_memory='none') or run the tests on the server's host"
        )
    return None


def cuda_unavailable() -> str | None:
    """Why ``"cuda"`` regions cannot be made on this machine (None when they can): no GPU
    that NVML sees, or no cuda-python for tritonclient's CUDA shared-memory utilities."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            count = int(pynvml.nvmlDeviceGetCount())
        finally:
            pynvml.nvmlShutdown()
    except Exception as e:  # no driver, no library: NVML's own words
        return f"no GPU on this machine (NVML: {e})"
    if count == 0:
        return "no GPU on this machine (NVML sees 0 devices)"
    try:
        from tritonclient.utils import cuda_shared_memory  # noqa: F401
    except (ImportError, RuntimeError) as e:
        return (
            f"tritonclient's CUDA shared-memory utilities are not usable ({e}); install"
            " cuda-python (pip install 'tritonclient[cuda]')"
        )
    return None


# --- regions -------------------------------------------------------------------------------


class _Region:
    """One region: created at construction, written, read, registered, destroyed."""

    kind: str
    name: str
    byte_size: int

    def fill(self, image: bytes) -> None:  # pragma: no cover - interface
        """Write ``image`` from offset 0."""
        raise NotImplementedError

    def read(self, offset: int, size: int) -> bytes:  # pragma: no cover - interface
        raise NotImplementedError

    def register_body(self) -> dict[str, Any]:  # pragma: no cover - interface
        raise NotImplementedError

    def destroy(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError


class _SystemRegion(_Region):
    """A POSIX shared memory object ``/dev/shm/<name>`` (key ``/<name>``)."""

    kind = "system"

    def __init__(self, name: str, byte_size: int) -> None:
        from tritonclient.utils import shared_memory as shm

        self._shm = shm
        self.name = name
        self.byte_size = byte_size
        self.key = "/" + name
        try:
            self._handle: Any = shm.create_shared_memory_region(
                name, self.key, byte_size, create_only=True
            )
        except shm.SharedMemoryException as e:
            raise MeasurementError(
                f"cannot create shared-memory region {SHM_DIR / name} of {byte_size} bytes:"
                f" {e.__cause__ or e}"
            ) from None

    def fill(self, image: bytes) -> None:
        if image:
            self._shm.set_shared_memory_region(
                self._handle, [np.frombuffer(image, dtype=np.uint8)], offset=0
            )

    def read(self, offset: int, size: int) -> bytes:
        view = self._shm.get_contents_as_numpy(self._handle, np.uint8, [size], offset=offset)
        data = view.tobytes()
        del view  # no buffer export may outlive the read: close() refuses while one does
        return data

    def register_body(self) -> dict[str, Any]:
        return {"key": self.key, "offset": 0, "byte_size": self.byte_size}

    def destroy(self) -> None:
        try:
            self._shm.destroy_shared_memory_region(self._handle)
        finally:
            # Whatever tritonclient managed, the object must be gone from /dev/shm.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(SHM_DIR / self.name)


class _CudaRegion(_Region):
    """Device memory of one GPU, shared through a CUDA IPC handle."""

    kind = "cuda"

    def __init__(self, name: str, byte_size: int, device_id: int = CUDA_DEVICE) -> None:
        from tritonclient.utils import cuda_shared_memory as cudashm

        self._cudashm = cudashm
        self.name = name
        self.byte_size = byte_size
        self.device_id = device_id
        try:
            self._handle: Any = cudashm.create_shared_memory_region(name, byte_size, device_id)
        except cudashm.CudaSharedMemoryException as e:
            raise MeasurementError(
                f"cannot allocate CUDA shared-memory region '{name}' of {byte_size} bytes on"
                f" GPU {device_id}: {e}"
            ) from None

    def fill(self, image: bytes) -> None:
        if image:
            self._cudashm.set_shared_memory_region(
                self._handle, [np.frombuffer(image, dtype=np.uint8)]
            )

    def read(self, offset: int, size: int) -> bytes:
        whole = self._cudashm.get_contents_as_numpy(self._handle, np.uint8, [self.byte_size])
        return bytes(whole[offset : offset + size].tobytes())

    def register_body(self) -> dict[str, Any]:
        raw = self._cudashm.get_raw_handle(self._handle)
        return {
            "raw_handle": {"b64": raw.decode() if isinstance(raw, bytes) else str(raw)},
            "device_id": self.device_id,
            "byte_size": self.byte_size,
        }

    def destroy(self) -> None:
        self._cudashm.destroy_shared_memory_region(self._handle)


def _aligned(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


@dataclass
class SharedMemory:
    """The regions of one measurement and where each tensor lies in them.

    :meth:`plan` lays them out without creating anything (``inputs`` are the input sets
    with their region references, ``outputs`` the output places of each set, for
    ``encode_payloads(output_shm=...)``), so requests can be encoded first; :meth:`open`
    creates the regions, writes the inputs and registers both with the server; :meth:`close`
    unregisters and removes everything, and is safe to call twice or before :meth:`open`.
    """

    kind: str
    http_url: str
    inputs: list[tuple[InputTensor, ...]] = field(default_factory=list)
    outputs: list[dict[str, ShmRef]] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)  # region name -> bytes
    image: bytes = b""  # the input region's content
    regions: list[_Region] = field(default_factory=list)
    registered: list[str] = field(default_factory=list)

    @classmethod
    def plan(
        cls,
        kind: str,
        http_url: str,
        tensors: Sequence[Sequence[InputTensor]],
        output_sizes: Sequence[Mapping[str, int]],
    ) -> SharedMemory:
        """Lay out ``tensors`` (input sets) and ``output_sizes`` (bytes of each output, per
        set) in one input and one output region, named for this process."""
        serial = next(_serial)
        in_name, out_name = f"{region_prefix()}{serial}_in", f"{region_prefix()}{serial}_out"
        self = cls(kind, http_url)
        image = bytearray()
        for tset in tensors:
            placed = []
            for t in tset:
                offset = _aligned(len(image))
                image += bytes(offset - len(image)) + t.data
                placed.append(replace(t, shm=ShmRef(in_name, offset, len(t.data))))
            self.inputs.append(tuple(placed))
        end = 0
        for sizes in output_sizes:
            place = {}
            for name, size in sizes.items():
                place[name] = ShmRef(out_name, end, size)
                end = _aligned(end + size)
            self.outputs.append(place)
        self.image = bytes(image)
        self.sizes = {in_name: max(len(image), 1), out_name: max(end, 1)}
        return self

    def open(self) -> None:
        """Create the regions, write the inputs, and register both regions with the server.
        On any failure what was made is removed before the error propagates."""
        make: Callable[[str, int], _Region] = (
            _SystemRegion if self.kind == "system" else _CudaRegion
        )
        try:
            for name, size in self.sizes.items():
                self.regions.append(make(name, size))
            self.regions[0].fill(self.image)
            for r in self.regions:
                self._register(r)
        except BaseException:
            self.close()
            raise

    def _path(self, region: str, action: str) -> str:
        api = "systemsharedmemory" if self.kind == "system" else "cudasharedmemory"
        return f"/v2/{api}/region/{quote(region, safe='')}/{action}"

    def _register(self, region: _Region) -> None:
        try:
            request_json(
                self.http_url,
                self._path(region.name, "register"),
                method="POST",
                body=region.register_body(),
            )
        except HttpStatusError as e:
            where = (
                f"{SHM_DIR / region.name}"
                if self.kind == "system"
                else f"GPU memory (CUDA IPC handle of '{region.name}')"
            )
            hint = (
                " A server in a container sees this host's /dev/shm only when the container"
                " shares the host's IPC namespace (--triton-ipc=host, docker run --ipc=host)."
                if self.kind == "system"
                else " The server must run on this host with access to the same GPU."
            )
            raise MeasurementError(
                f"the server at {self.http_url} could not register the {self.kind}"
                f" shared-memory region '{region.name}' ({region.byte_size} bytes in {where}):"
                f" {e.message}.{hint}"
            ) from None
        self.registered.append(region.name)

    def read(self, ref: ShmRef) -> bytes:
        """The bytes at ``ref`` now."""
        region = next(r for r in self.regions if r.name == ref.region)
        return region.read(ref.offset, ref.byte_size)

    def verify(self, expected: Sequence[Mapping[str, bytes]]) -> list[str]:
        """Compare every output place with the server's answer over the socket to the same
        inputs (``expected[k][name]``); the outputs that differ, as ``'NAME' (set k)``."""
        differ = []
        for k, (places, want) in enumerate(zip(self.outputs, expected, strict=True)):
            for name, ref in places.items():
                if name in want and self.read(ref) != want[name]:
                    differ.append(f"'{name}' (set {k})")
        return differ

    def status(self) -> list[str]:
        """Names of the regions the server has registered (this kind), from its status API."""
        api = "systemsharedmemory" if self.kind == "system" else "cudasharedmemory"
        doc = request_json(self.http_url, f"/v2/{api}/status")
        return sorted(str(r.get("name")) for r in doc or [] if isinstance(r, Mapping))

    def close(self) -> list[str]:
        """Unregister the regions from the server, then remove them; what could not be done,
        one line each (a server that is gone has forgotten them anyway)."""
        problems = []
        while self.registered:
            name = self.registered.pop()
            # A request that failed a moment ago may still hold the region in the server:
            # an unregister can be refused once; try again briefly before giving up.
            for attempt in range(UNREGISTER_ATTEMPTS):
                try:
                    request_json(self.http_url, self._path(name, "unregister"), method="POST")
                    break
                except (HttpStatusError, OSError) as e:
                    if attempt == UNREGISTER_ATTEMPTS - 1:
                        problems.append(f"unregister '{name}': {e}")
                    else:
                        time.sleep(0.2)
        while self.regions:
            region = self.regions.pop()
            try:
                region.destroy()
            except Exception as e:
                problems.append(f"remove '{region.name}': {e}")
        return problems


#: Tries of each unregister when the regions are closed.
UNREGISTER_ATTEMPTS = 5


# --- output sizes and reference outputs ----------------------------------------------------


def reference_outputs(
    http_url: str,
    spec: ModelSpec,
    version: str | None,
    tensors: Sequence[InputTensor],
    timeout: float = 60.0,
) -> dict[str, bytes]:
    """The model's answer to one input set over HTTP (binary outputs): each output's bytes as
    the server writes them into a region. Raises MeasurementError when the request fails."""
    host, port = parse_url(http_url, option="server address")
    request = http_client.encode_request(
        f"{host}:{port}", spec.name, version, tensors, [o.name for o in spec.outputs]
    )
    parts = http_client.RequestTemplate.parse(request)
    body = parts.json_header + parts.binary
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(
            "POST",
            http_client.infer_path(spec.name, version),
            body=body,
            headers={
                "Content-Type": "application/octet-stream",
                "Inference-Header-Content-Length": str(len(parts.json_header)),
            },
        )
        response = conn.getresponse()
        raw = response.read()
        header_len = response.getheader("Inference-Header-Content-Length")
    except OSError as e:
        raise MeasurementError(
            f"model '{spec.name}': the request that sizes the output regions failed: {e}"
        ) from e
    finally:
        conn.close()
    n = int(header_len) if header_len else len(raw)
    try:
        doc = json.loads(raw[:n])
    except ValueError:
        doc = {}
    if response.status != 200:
        raise MeasurementError(
            f"model '{spec.name}': the request that sizes the output regions failed with"
            f" HTTP {response.status}: {doc.get('error') or raw[:200]!r}"
        )
    out: dict[str, bytes] = {}
    pos = n
    for o in doc.get("outputs", []):
        size = int((o.get("parameters") or {}).get("binary_data_size", 0))
        out[str(o["name"])] = raw[pos : pos + size]
        pos += size
    return out


def fixed_output_sizes(spec: ModelSpec, batch_size: int) -> dict[str, int]:
    """Bytes of each output from the configuration alone (a model that cannot be probed);
    InputSpecError for an output whose size the configuration does not fix."""
    sizes = {}
    for o in spec.outputs:
        dtype = numpy_dtype(o.datatype)
        if o.datatype == "BYTES" or dtype is None or any(d < 0 for d in o.dims):
            raise InputSpecError(
                f"model '{spec.name}' output '{o.name}' ({o.datatype}"
                f" {list(o.dims)}) has no fixed size, and a sequence model is not probed for"
                " it: shared memory needs fixed-size outputs here; measure it over the socket"
                " (shared_memory='none')"
            )
        count = int(np.prod(o.dims, dtype=np.int64)) * (batch_size if spec.batching else 1)
        sizes[o.name] = count * dtype.itemsize
    return sizes
