"""Per-response records of streaming requests, kept beside the per-request :class:`Records`.

For each completed request (same order as its record): the time from its start to its first
and second response and to its last one, the number of responses, the tokens counted in them
(-1: not counted), and the gaps between consecutive responses, flat, request after request
(a request of ``n`` responses has ``n - 1``), the index of the request sent (its prompt,
for input tokens), and where the text of a text output is kept (``tokenizer=``), the text
of each request, counted after the windows. "Start" is the request's send time in a closed
loop and its scheduled time in an open loop, as for its latency. Times are nanoseconds; -1
where a request had no such response.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from typing import cast

import numpy as np

from pytest_triton_perf.load.transport import StreamingClient


@dataclass
class ResponseRecorder:
    """Append-only per-response store, filled by the loops right after each request's record."""

    first_ns: array = field(default_factory=lambda: array("q"))
    second_ns: array = field(default_factory=lambda: array("q"))
    last_ns: array = field(default_factory=lambda: array("q"))
    count: array = field(default_factory=lambda: array("q"))
    tokens: array = field(default_factory=lambda: array("q"))
    gaps_ns: array = field(default_factory=lambda: array("q"))
    prompt: array = field(default_factory=lambda: array("q"))
    #: Each request's text output (None: texts are not kept).
    texts: list[bytes] | None = None

    def add(self, start_ns: int, client: object) -> None:
        """The responses of the request ``client`` has just completed (a StreamingClient)."""
        done = cast(StreamingClient, client)
        times = done.response_ns
        n = len(times)
        self.count.append(n)
        self.tokens.append(done.tokens)
        self.prompt.append(getattr(done, "index", -1))
        if self.texts is not None:
            self.texts.append(getattr(done, "text", None) or b"")
        if not n:
            self.first_ns.append(-1)
            self.second_ns.append(-1)
            self.last_ns.append(-1)
            return
        first = times[0]
        self.first_ns.append(first - start_ns)
        self.second_ns.append(times[1] - start_ns if n > 1 else -1)
        self.last_ns.append(times[-1] - start_ns)
        gaps = self.gaps_ns
        prev = first
        for t in times[1:]:
            gaps.append(t - prev)
            prev = t

    def snapshot(self, n: int) -> ResponseRecords:
        """The first ``n`` requests' responses as numpy arrays (copies)."""
        n = min(n, len(self.count))
        count = np.frombuffer(self.count, dtype=np.int64, count=n).copy()
        gaps = int(np.maximum(count - 1, 0).sum())
        return ResponseRecords(
            first_ns=np.frombuffer(self.first_ns, dtype=np.int64, count=n).copy(),
            second_ns=np.frombuffer(self.second_ns, dtype=np.int64, count=n).copy(),
            last_ns=np.frombuffer(self.last_ns, dtype=np.int64, count=n).copy(),
            count=count,
            tokens=np.frombuffer(self.tokens, dtype=np.int64, count=n).copy(),
            gaps_ns=np.frombuffer(self.gaps_ns, dtype=np.int64, count=gaps).copy(),
            prompt=np.frombuffer(self.prompt, dtype=np.int64, count=n).copy(),
            texts=tuple(self.texts[:n]) if self.texts is not None else None,
        )


@dataclass(frozen=True)
class ResponseRecords:
    """Per-response figures of completed requests, aligned with their :class:`Records`."""

    first_ns: np.ndarray
    second_ns: np.ndarray
    last_ns: np.ndarray
    count: np.ndarray
    tokens: np.ndarray
    gaps_ns: np.ndarray
    #: The index of each request's payload (its prompt); -1 where unknown.
    prompt: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    #: Each request's text output (``tokenizer=``; None: not kept).
    texts: tuple[bytes, ...] | None = None
    #: Each request's input tokens (None: not known; see ``text.count_tokens``).
    input_tokens: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.count)

    @classmethod
    def empty(cls) -> ResponseRecords:
        """No requests."""
        e = np.empty(0, np.int64)
        return cls(e, e, e, e, e, e, e)

    def _gap_owner(self) -> np.ndarray:
        """The request index of each gap."""
        return np.repeat(np.arange(len(self.count)), np.maximum(self.count - 1, 0))

    def select(self, mask: np.ndarray) -> ResponseRecords:
        """The requests where ``mask`` is true, with their gaps."""
        return ResponseRecords(
            first_ns=self.first_ns[mask],
            second_ns=self.second_ns[mask],
            last_ns=self.last_ns[mask],
            count=self.count[mask],
            tokens=self.tokens[mask],
            gaps_ns=self.gaps_ns[mask[self._gap_owner()]],
            prompt=self.prompt[mask] if len(self.prompt) == len(mask) else self.prompt,
            texts=(
                tuple(t for t, keep in zip(self.texts, mask, strict=True) if keep)
                if self.texts is not None
                else None
            ),
            input_tokens=self.input_tokens[mask] if self.input_tokens is not None else None,
        )

    @classmethod
    def merge(cls, parts: list[ResponseRecords], order: np.ndarray) -> ResponseRecords:
        """Parts concatenated, then requests put in ``order`` (as their Records are), each
        request's gaps moving with it."""
        if not parts:
            return cls.empty()
        whole = cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in _FIELDS))
        prompt = np.concatenate(
            [p.prompt if len(p.prompt) == len(p) else np.full(len(p), -1) for p in parts]
        )
        texts = None
        if all(p.texts is not None for p in parts):
            joined = [t for p in parts for t in (p.texts or ())]
            texts = tuple(joined[k] for k in order)
        inputs = None
        if all(p.input_tokens is not None for p in parts):
            inputs = np.concatenate([cast(np.ndarray, p.input_tokens) for p in parts])[order]
        position = np.empty(len(order), np.int64)
        position[order] = np.arange(len(order))
        gap_order = np.argsort(position[whole._gap_owner()], kind="stable")
        return cls(
            first_ns=whole.first_ns[order],
            second_ns=whole.second_ns[order],
            last_ns=whole.last_ns[order],
            count=whole.count[order],
            tokens=whole.tokens[order],
            gaps_ns=whole.gaps_ns[gap_order],
            prompt=prompt[order],
            texts=texts,
            input_tokens=inputs,
        )


_FIELDS = ("first_ns", "second_ns", "last_ns", "count", "tokens", "gaps_ns")
