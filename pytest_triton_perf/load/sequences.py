"""Sequences: driving a stateful model (``sequence_batching``) the way its clients do.

Each slot of the closed loop runs one sequence at a time: a fresh correlation ID, then
``length`` requests on it, the first with ``sequence_start``, the last with
``sequence_end``, each sent when the previous one has been answered; then the next sequence.
So ``concurrency=N`` means N sequences in flight (perf_analyzer's meaning). Lengths are
``sequence_length`` give or take ``sequence_length_variation`` (a fraction, uniform, seeded:
perf_analyzer's rule, ``L + int(u * variation * L)`` with ``u`` in [-1, 1), at least 1).

Correlation IDs are unique within a measurement, across worker processes as well: worker
``w`` of ``W`` uses ``1 + (base + n * W + w) mod max_id`` for its ``n``-th sequence, where
``base`` is drawn at random per measurement (so two measurements, or two test sessions
sharing one server, do not reuse each other's IDs) and ``max_id`` is what the model's CORRID
control holds. IDs travel as numbers, or as decimal strings where the model's CORRID control
is TYPE_STRING (or when asked).

When a phase stops, every sequence in progress is ended at once with one request carrying
``sequence_end`` (perf_analyzer's ``CompleteOngoingSequence``), so that no sequence is left
for the server's idle timeout and every sequence started is ended exactly once.

The requests are encoded per send: the inputs are encoded once as for any model, and only
the sequence parameters are added to them (protobuf map entries appended to the serialised
ModelInferRequest; the HTTP request's JSON header rebuilt from its parts).
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from time import perf_counter_ns
from typing import Literal, get_args

from pytest_triton_perf.load import grpc_client, http_client
from pytest_triton_perf.load.recorder import Recorder
from pytest_triton_perf.load.transport import RawInferClient, TransportError

#: perf_analyzer's defaults when no sequence length is given (--sequence-length 20,
#: --sequence-length-variation 20).
DEFAULT_LENGTH = 20
DEFAULT_VARIATION = 0.2
#: What ``sequence_id_type`` accepts: "auto" follows the model's CORRID control.
IdType = Literal["auto", "uint64", "string"]
ID_TYPES: tuple[IdType, ...] = get_args(IdType)


@dataclass(frozen=True)
class SequencePlan:
    """How one measurement drives a sequence model (picklable, shared by all workers)."""

    length: int
    variation: float = 0.0
    string_ids: bool = False
    max_id: int = 2**63 - 1
    id_base: int = 0
    seed: int = 0

    def renewed(self) -> SequencePlan:
        """The same plan with IDs half the ID space away: for a driver opened again within
        one measurement, whose sequences must not reuse the IDs already sent."""
        return replace(self, id_base=(self.id_base + self.max_id // 2) % self.max_id)

    def for_probe(self) -> SequencePlan:
        """The plan whose first ID is the one just below this plan's first: the probe's one
        sequence uses an ID none of the measurement's sequences will."""
        return replace(self, id_base=(self.id_base - 1) % self.max_id)


def random_id_base(max_id: int) -> int:
    """A random starting point in ``[0, max_id)`` for a measurement's correlation IDs."""
    return secrets.randbelow(max_id)


def sequence_length(rng: random.Random, length: int, variation: float) -> int:
    """One sequence's length: ``length`` give or take ``variation`` (a fraction), at least 1."""
    if variation <= 0:
        return length
    return max(1, length + int(rng.uniform(-1.0, 1.0) * variation * length))


class Sequencer:
    """The sequences of one load-generator process: IDs, lengths, request encoding, and the
    recorder that completed sequences go to (replaced at each phase)."""

    def __init__(
        self,
        plan: SequencePlan,
        protocol: str,
        payloads: Sequence[bytes],
        *,
        worker: int = 0,
        workers: int = 1,
    ) -> None:
        self.plan = plan
        self.recorder = Recorder()
        self._worker = worker
        self._workers = max(1, workers)
        self._issued = 0
        self._rng = random.Random(plan.seed * 1_000_003 + worker)
        self.encode: Callable[[int, int | str, bool, bool], bytes]
        if protocol == "http":
            templates = [http_client.RequestTemplate.parse(p) for p in payloads]
            params = http_client.sequence_parameters
            self.encode = lambda i, sid, start, end: templates[i].render(params(sid, start, end))
        else:
            messages = list(payloads)
            params_pb = grpc_client.sequence_parameters
            self.encode = lambda i, sid, start, end: messages[i] + params_pb(sid, start, end)

    def next_id(self) -> int | str:
        """A correlation ID no other sequence of this measurement uses."""
        n = self._issued
        self._issued += 1
        plan = self.plan
        sid = 1 + (plan.id_base + n * self._workers + self._worker) % plan.max_id
        return str(sid) if plan.string_ids else sid

    def next_length(self) -> int:
        """The length of the next sequence (seeded)."""
        return sequence_length(self._rng, self.plan.length, self.plan.variation)


class SequenceClient:
    """One slot's client for a sequence model: each ``infer`` sends the next request of the
    slot's current sequence, starting a new sequence after the last one ended.

    A connection failure abandons the sequence (the server's view of it is unknown; its idle
    timeout ends it) and the next request starts a new one.
    """

    def __init__(self, client: RawInferClient, sequencer: Sequencer) -> None:
        self.client = client
        self._seq = sequencer
        self._id: int | str = 0
        self._left = 0  # requests of the current sequence still to send; 0: none open
        self._length = 0
        self._start_ns = 0
        self._ok = True
        self._truncated = False

    @property
    def in_sequence(self) -> bool:
        """True while a sequence is open (started, not yet ended)."""
        return self._left > 0

    async def infer(self, i: int) -> str | None:
        """Send the next request of the current sequence (payload ``i``'s inputs)."""
        seq = self._seq
        start = self._left == 0
        if start:
            self._id = seq.next_id()
            self._left = self._length = seq.next_length()
            self._ok = True
            self._truncated = False
            self._start_ns = perf_counter_ns()
        end = self._left == 1
        try:
            error = await self.client.infer_raw(seq.encode(i, self._id, start, end))
        except BaseException:
            self._left = 0
            raise
        self._left -= 1
        if error is not None:
            self._ok = False
        if end and not self._truncated:
            now = perf_counter_ns()
            seq.recorder.sequences.add(now, now - self._start_ns, self._ok, self._length)
        return error

    async def finish(self) -> None:
        """End the open sequence now with one request carrying ``sequence_end``, recorded as
        a request (it completes after the windows: counted as drained); a sequence cut short
        is not recorded as a sequence. Nothing when no sequence is open."""
        if self._left == 0:
            return
        self._left = 1
        self._truncated = True
        t0 = perf_counter_ns()
        try:
            error = await self.infer(0)
        except TransportError as e:
            error = f"connection error: {e}"
        t1 = perf_counter_ns()
        self._seq.recorder.add(t1, t1 - t0, error)

    async def close(self) -> None:
        """Release the wrapped client's connection."""
        await self.client.close()


__all__ = [
    "DEFAULT_LENGTH",
    "DEFAULT_VARIATION",
    "ID_TYPES",
    "SequenceClient",
    "SequencePlan",
    "Sequencer",
    "random_id_base",
    "sequence_length",
]
