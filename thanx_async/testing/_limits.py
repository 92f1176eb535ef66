"""Per-credential bookkeeping: the rate-limit sliding log and the idempotency cache."""

from __future__ import annotations

from collections import deque
from typing import Any

import attrs

__all__ = ["IdempotencyCache", "SlidingLog"]


class SlidingLog:
    """Arrival times of admitted requests for one credential, over both windows.

    Only admitted requests are stamped: a request refused with 429 does not
    use up budget, so a client that backs off correctly recovers after one
    window, not after the window its own refusals keep extending.
    """

    def __init__(self) -> None:
        self._stamps: deque[float] = deque()

    def admit(
        self,
        now: float,
        limits: tuple[tuple[int | None, float | None], ...],
    ) -> float | None:
        """Stamp a request at ``now`` if every ``(limit, window)`` allows it.

        A limit or window that is ``None`` or ``<= 0`` is disabled.

        Returns:
            ``None`` when admitted; otherwise the seconds until the fullest
            window has room again (the request is not stamped).
        """
        active = [(limit, window) for limit, window in limits if limit and window and limit > 0]
        stamps = self._stamps
        horizon = max((window for _, window in active), default=0.0)
        while stamps and stamps[0] <= now - horizon:
            stamps.popleft()
        wait = 0.0
        for limit, window in active:
            if len(stamps) >= limit and stamps[-limit] > now - window:
                # The limit-th most recent stamp must leave the window before
                # one more request fits.
                wait = max(wait, stamps[-limit] + window - now)
        if wait > 0:
            return wait
        stamps.append(now)
        return None


@attrs.frozen
class CachedResponse:
    """The original response to an idempotent request, replayed byte for byte."""

    body: bytes
    payload: Any
    status: int
    response: bytes
    stored_at: float


class IdempotencyCache:
    """``X-Idempotency-Key`` → original response, per credential, with a retention time."""

    def __init__(self) -> None:
        # Insertion order is expiry order (retention is the same for all entries),
        # so expired entries are always at the front.
        self._entries: dict[tuple[str, str], CachedResponse] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, client_id: str, key: str, now: float, retention: float) -> CachedResponse | None:
        """The live entry for ``(client_id, key)``, after dropping expired ones."""
        entries = self._entries
        while entries:
            oldest_key = next(iter(entries))
            if now - entries[oldest_key].stored_at < retention:
                break
            del entries[oldest_key]
        entry = entries.get((client_id, key))
        if entry is not None and now - entry.stored_at >= retention:
            # Retention was shortened after this entry was stored.
            del entries[(client_id, key)]
            return None
        return entry

    def put(self, client_id: str, key: str, entry: CachedResponse) -> None:
        """Store the original response for ``(client_id, key)``."""
        self._entries[(client_id, key)] = entry

    def clear(self) -> None:
        """Forget every key (as if the retention time had passed)."""
        self._entries.clear()
