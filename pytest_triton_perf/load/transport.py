"""What every protocol client of the load generator offers to the loops that drive it."""

from __future__ import annotations

from typing import Protocol


class TransportError(Exception):
    """The connection itself failed (refused, reset, closed): the server may be gone.

    Distinct from a failed inference, which the server answers and which is counted: a loop
    that sees this asks whether the server is still alive before counting anything.
    """


class InferClient(Protocol):
    """One in-flight slot's client: sends pre-encoded request ``i`` and awaits its answer."""

    async def infer(self, i: int) -> str | None:
        """Send request ``i`` and wait for its response.

        Returns None on success, or the server's error message for a failed inference.
        Raises TransportError when the connection fails.
        """
        ...

    async def close(self) -> None:
        """Release the connection."""
        ...
