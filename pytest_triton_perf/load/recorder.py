"""Per-request records kept by the load loops: completion time, latency, outcome.

Records are raw (``time.perf_counter_ns``, which is CLOCK_MONOTONIC on Linux and therefore
comparable across processes), so that windows are assigned after the fact from their
boundary times and records of several worker processes can be merged exactly.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field

import numpy as np

from pytest_triton_perf.load.responses import ResponseRecorder, ResponseRecords

#: Error messages kept per recorder; every error is counted, only the text is capped.
MAX_ERROR_MESSAGES = 1000


@dataclass(frozen=True)
class SequenceRecords:
    """Completed sequences of a sequence model as arrays: when the last response came, how
    long the sequence took from its first send, whether every request succeeded, and how
    many requests it had. Mergeable across processes like :class:`Records`."""

    end_ns: np.ndarray
    latency_ns: np.ndarray
    ok: np.ndarray
    length: np.ndarray

    def __len__(self) -> int:
        return len(self.end_ns)

    @classmethod
    def empty(cls) -> SequenceRecords:
        """No sequences."""
        return cls(
            np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, bool), np.empty(0, np.int64)
        )

    @classmethod
    def merge(cls, parts: list[SequenceRecords]) -> SequenceRecords:
        """Pool the sequences of several workers, ordered by completion time."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        end = np.concatenate([p.end_ns for p in parts])
        order = np.argsort(end, kind="stable")
        return cls(
            end_ns=end[order],
            latency_ns=np.concatenate([p.latency_ns for p in parts])[order],
            ok=np.concatenate([p.ok for p in parts])[order],
            length=np.concatenate([p.length for p in parts])[order],
        )

    def between(self, start_ns: int, end_ns: int) -> SequenceRecords:
        """Sequences whose last response came in ``[start_ns, end_ns)``."""
        mask = (self.end_ns >= start_ns) & (self.end_ns < end_ns)
        return SequenceRecords(
            self.end_ns[mask], self.latency_ns[mask], self.ok[mask], self.length[mask]
        )


@dataclass
class SequenceRecorder:
    """Append-only store of completed sequences (see :class:`SequenceRecords`)."""

    end_ns: array = field(default_factory=lambda: array("q"))
    latency_ns: array = field(default_factory=lambda: array("q"))
    ok: array = field(default_factory=lambda: array("b"))
    length: array = field(default_factory=lambda: array("q"))

    def add(self, end_ns: int, latency_ns: int, ok: bool, length: int) -> None:
        """Record one sequence whose last response came at ``end_ns``."""
        self.end_ns.append(end_ns)
        self.latency_ns.append(latency_ns)
        self.ok.append(1 if ok else 0)
        self.length.append(length)

    def snapshot(self) -> SequenceRecords:
        """The sequences so far as numpy arrays (copies)."""
        n = len(self.end_ns)
        return SequenceRecords(
            end_ns=np.frombuffer(self.end_ns, dtype=np.int64, count=n).copy(),
            latency_ns=np.frombuffer(self.latency_ns, dtype=np.int64, count=n).copy(),
            ok=np.frombuffer(self.ok, dtype=np.int8, count=n).astype(bool),
            length=np.frombuffer(self.length, dtype=np.int64, count=n).copy(),
        )


@dataclass
class Recorder:
    """Append-only store of completed requests, cheap enough for the hot loop."""

    end_ns: array = field(default_factory=lambda: array("q"))
    latency_ns: array = field(default_factory=lambda: array("q"))
    ok: array = field(default_factory=lambda: array("b"))
    error_messages: list[tuple[int, str]] = field(default_factory=list)
    # Open loop only: how long after its scheduled time each request was actually sent.
    send_delay_ns: array = field(default_factory=lambda: array("q"))
    # Sequence models: every sequence completed, besides its requests above.
    sequences: SequenceRecorder = field(default_factory=SequenceRecorder)
    # Streaming (decoupled) models only: each request's responses, filled by the loops.
    responses: ResponseRecorder | None = None

    def add(self, end_ns: int, latency_ns: int, error: str | None) -> None:
        """Record one completed request (``error`` None for a success)."""
        self.end_ns.append(end_ns)
        self.latency_ns.append(latency_ns)
        if error is None:
            self.ok.append(1)
        else:
            self.ok.append(0)
            if len(self.error_messages) < MAX_ERROR_MESSAGES:
                self.error_messages.append((end_ns, error))

    def add_scheduled(
        self, end_ns: int, latency_ns: int, error: str | None, send_delay_ns: int
    ) -> None:
        """Record one open-loop request; latency counts from its scheduled send time."""
        self.send_delay_ns.append(send_delay_ns)
        self.add(end_ns, latency_ns, error)

    def __len__(self) -> int:
        return len(self.end_ns)

    def snapshot(self) -> Records:
        """The records so far as numpy arrays (copies; the recorder may keep growing)."""
        n = len(self.end_ns)
        return Records(
            end_ns=np.frombuffer(self.end_ns, dtype=np.int64, count=n).copy(),
            latency_ns=np.frombuffer(self.latency_ns, dtype=np.int64, count=n).copy(),
            ok=np.frombuffer(self.ok, dtype=np.int8, count=n).astype(bool),
            error_messages=tuple(self.error_messages),
            send_delay_ns=(
                np.frombuffer(self.send_delay_ns, dtype=np.int64, count=n).copy()
                if len(self.send_delay_ns) >= n and n
                else np.empty(0, np.int64)
            ),
            sequences=self.sequences.snapshot(),
            responses=self.responses.snapshot(n) if self.responses is not None else None,
        )


@dataclass(frozen=True)
class Records:
    """Completed requests as arrays; picklable, mergeable across processes."""

    end_ns: np.ndarray
    latency_ns: np.ndarray
    ok: np.ndarray
    error_messages: tuple[tuple[int, str], ...] = ()
    # Open loop: send delay per record (same order); empty for a closed loop.
    send_delay_ns: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    # Sequence models: the sequences completed (empty otherwise).
    sequences: SequenceRecords = field(default_factory=SequenceRecords.empty)
    # Streaming (decoupled) models: each record's responses (same order); None otherwise.
    responses: ResponseRecords | None = None

    def __len__(self) -> int:
        return len(self.end_ns)

    @classmethod
    def empty(cls) -> Records:
        """No records."""
        return cls(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, bool))

    @classmethod
    def merge(cls, parts: list[Records]) -> Records:
        """Pool records of several workers, ordered by completion time (raw, never averaged)."""
        if not parts:
            return cls.empty()
        end = np.concatenate([p.end_ns for p in parts])
        order = np.argsort(end, kind="stable")
        msgs = sorted((m for p in parts for m in p.error_messages), key=lambda m: m[0])
        delays = np.empty(0, np.int64)
        if all(len(p.send_delay_ns) == len(p) for p in parts):
            delays = np.concatenate([p.send_delay_ns for p in parts])[order]
        streamed = [p.responses for p in parts if p.responses is not None]
        return cls(
            end_ns=end[order],
            latency_ns=np.concatenate([p.latency_ns for p in parts])[order],
            ok=np.concatenate([p.ok for p in parts])[order],
            error_messages=tuple(msgs[:MAX_ERROR_MESSAGES]),
            send_delay_ns=delays,
            sequences=SequenceRecords.merge([p.sequences for p in parts]),
            responses=(
                ResponseRecords.merge(streamed, order) if len(streamed) == len(parts) else None
            ),
        )

    def between(self, start_ns: int, end_ns: int) -> Records:
        """Records that completed in ``[start_ns, end_ns)``."""
        mask = (self.end_ns >= start_ns) & (self.end_ns < end_ns)
        return self._select(
            mask,
            tuple(m for m in self.error_messages if start_ns <= m[0] < end_ns),
            self.sequences.between(start_ns, end_ns),
        )

    def started_between(self, start_ns: int, end_ns: int) -> Records:
        """Records that *started* in ``[start_ns, end_ns)`` (see :meth:`started_ns`),
        followed to their end: the requests an open loop offered at a time, however late
        they were answered. Sequences are those that ended in the span."""
        started = self.started_ns()
        mask = (started >= start_ns) & (started < end_ns)
        ends = set(self.end_ns[mask & ~self.ok].tolist())
        messages = tuple(m for m in self.error_messages if m[0] in ends)
        return self._select(mask, messages, self.sequences.between(start_ns, end_ns))

    def _select(
        self,
        mask: np.ndarray,
        messages: tuple[tuple[int, str], ...],
        sequences: SequenceRecords,
    ) -> Records:
        return Records(
            end_ns=self.end_ns[mask],
            latency_ns=self.latency_ns[mask],
            ok=self.ok[mask],
            error_messages=messages,
            send_delay_ns=self.send_delay_ns[mask] if self.scheduled else self.send_delay_ns,
            sequences=sequences,
            responses=self.responses.select(mask) if self.responses is not None else None,
        )

    def started_ns(self) -> np.ndarray:
        """Each request's start: its send in a closed loop, its scheduled time in an open
        loop (the time its latency counts from)."""
        started: np.ndarray = self.end_ns - self.latency_ns
        return started

    @property
    def scheduled(self) -> bool:
        """True for open-loop records (each has a send delay)."""
        return len(self.send_delay_ns) == len(self.end_ns) and len(self.end_ns) > 0

    def late_share(self, threshold_ns: int) -> float | None:
        """Share of requests sent more than ``threshold_ns`` after schedule (open loop only)."""
        if not self.scheduled:
            return None
        return float((self.send_delay_ns > threshold_ns).mean())

    def first_error(self) -> str | None:
        """The earliest kept error message, if any error was recorded."""
        if self.error_messages:
            return min(self.error_messages, key=lambda m: m[0])[1]
        if len(self.ok) and not self.ok.all():
            return "(error message not kept)"
        return None
