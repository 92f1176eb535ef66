"""A clock that only moves when a test says so."""

from __future__ import annotations

__all__ = ["ManualClock"]


class ManualClock:
    """A callable clock for :class:`EmulatorState` that only moves on :meth:`advance`.

    Example:
        >>> clock = ManualClock()
        >>> clock.advance(1.5)
        >>> clock()
        1001.5
    """

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (which must not be negative)."""
        if seconds < 0:
            raise ValueError(f"time does not go backwards (got {seconds})")
        self.now += seconds
