"""gRPC inference client: a ModelInferRequest serialised once, sent as raw bytes.

tritonclient's gRPC client builds and serialises the protobuf message on every call; here the
message is serialised once before the clock starts and the call is registered without a
serializer, so grpc sends the bytes as they are and hands the response back unparsed (a
non-OK status is the only error Triton reports over gRPC).
"""

from __future__ import annotations

from collections.abc import Coroutine, Mapping, Sequence
from typing import Any

from pytest_triton_perf.load.transport import InputTensor, ShmRef, TransportError

MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"

# No message size cap: large tensors must not fail on grpc's 4 MB default.
CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
    # One TCP connection per channel even when several channels target one address.
    ("grpc.use_local_subchannel_pool", 1),
    # ModelInfer is not idempotent for a measurement: a retried request would be counted once
    # by us and twice by the server. Retries also cost CPU per call.
    ("grpc.enable_retries", 0),
)


def encode_request(
    model: str,
    version: str | None,
    inputs: Sequence[InputTensor],
    outputs: Sequence[str],
    output_shm: Mapping[str, ShmRef] | None = None,
) -> bytes:
    """Serialised ``ModelInferRequest`` carrying the inputs as raw_input_contents, or, for
    inputs with a shared-memory reference (``InputTensor.shm``), as the region parameters of
    Triton's shared-memory extension; outputs named in ``output_shm`` are written by the
    server into their region instead of the response."""
    from tritonclient.grpc import service_pb2

    req = service_pb2.ModelInferRequest(model_name=model, model_version=version or "")
    for t in inputs:
        tensor = req.inputs.add()
        tensor.name = t.name
        tensor.datatype = t.datatype
        tensor.shape.extend(t.shape)
        if t.shm is not None:
            _set_shm(tensor.parameters, t.shm)
        else:
            req.raw_input_contents.append(t.data)
    for o in outputs:
        out = req.outputs.add()
        out.name = o
        if output_shm and o in output_shm:
            _set_shm(out.parameters, output_shm[o])
    return bytes(req.SerializeToString())


def _set_shm(parameters: Any, ref: ShmRef) -> None:
    """The three parameters that point a tensor at a registered region (what tritonclient's
    ``set_shared_memory`` sets)."""
    parameters["shared_memory_region"].string_param = ref.region
    parameters["shared_memory_byte_size"].int64_param = ref.byte_size
    if ref.offset:
        parameters["shared_memory_offset"].int64_param = ref.offset


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _parameter(key: str, value: bytes) -> bytes:
    """One entry of ``ModelInferRequest.parameters`` (field 4, a map of InferParameter)."""
    k = key.encode()
    entry = b"\x0a" + _varint(len(k)) + k + b"\x12" + _varint(len(value)) + value
    return b"\x22" + _varint(len(entry)) + entry


_FLAGS = {
    (start, end): _parameter("sequence_start", b"\x08" + bytes([start]))
    + _parameter("sequence_end", b"\x08" + bytes([end]))
    for start in (False, True)
    for end in (False, True)
}


def sequence_parameters(sequence_id: int | str, start: bool, end: bool) -> bytes:
    """The ``sequence_id``, ``sequence_start`` and ``sequence_end`` parameters as protobuf
    bytes to append to a serialised ModelInferRequest (appended map entries merge into the
    message): what tritonclient sets, the id as ``int64_param`` or ``string_param``."""
    if isinstance(sequence_id, str):
        raw = sequence_id.encode()
        value = b"\x1a" + _varint(len(raw)) + raw
    else:
        value = b"\x10" + _varint(sequence_id)
    return _parameter("sequence_id", value) + _FLAGS[(start, end)]


def _is_transport_failure(code: Any) -> bool:
    import grpc

    return code in (grpc.StatusCode.UNAVAILABLE,)


class GrpcInferClient:
    """Sends pre-encoded ModelInfer requests on a grpc.aio channel (shared or private)."""

    def __init__(self, channel: Any, requests: Sequence[bytes]) -> None:
        self._requests = list(requests)
        # Identity (de)serialisation: bytes in, bytes out.
        try:
            # A registered method skips per-call method lookups (grpcio >= 1.63).
            self._call = channel.unary_unary(MODEL_INFER, _registered_method=True)
        except TypeError:  # pragma: no cover - older grpcio
            self._call = channel.unary_unary(MODEL_INFER)

    def infer(self, i: int) -> Coroutine[Any, Any, str | None]:
        """Send request ``i``; None on OK, ``"<STATUS>: <details>"`` otherwise."""
        return self.infer_raw(self._requests[i])

    async def infer_raw(self, request: bytes) -> str | None:
        """Send a serialised ModelInferRequest; the outcome as :meth:`infer`'s."""
        import grpc

        try:
            await self._call(request)
        except grpc.aio.AioRpcError as e:
            code = e.code()
            text = f"{code.name}: {e.details()}"
            if _is_transport_failure(code):
                raise TransportError(text) from e
            return text
        return None

    async def close(self) -> None:
        """Nothing to release: channels are owned by whoever opened them."""


def open_channel(url: str) -> Any:
    """A grpc.aio channel to ``host:port`` (must be called inside the running loop)."""
    import grpc

    return grpc.aio.insecure_channel(url, options=list(CHANNEL_OPTIONS))
