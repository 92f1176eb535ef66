"""A bounded, time-limited memory of deliveries already accepted (for deduplication)."""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["ReplayMemory", "digest"]


def digest(*parts: bytes) -> bytes:
    """A 64-bit key for ``parts``: cheap to keep; 190,000 keys have a 1 in 10^9 collision chance."""
    hasher = hashlib.blake2b(digest_size=8)
    for part in parts:
        hasher.update(part)
        hasher.update(b"\0")
    return hasher.digest()


class ReplayMemory:
    """Keys seen in the last ``ttl`` seconds, at most ``max_keys`` of them (oldest forgotten first).

    Keys are stored with their expiry in insertion order; since every key
    lives for the same ``ttl`` on a monotonic clock, the oldest is always
    first, so forgetting is O(1) per key and memory is ~150 bytes per key.

    Args:
        ttl: seconds a key is remembered.
        max_keys: the most keys kept; beyond it the oldest go early.
        clock: monotonic seconds.
    """

    def __init__(
        self, *, ttl: float, max_keys: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if ttl <= 0:
            raise ValueError(f"the dedupe memory's ttl must be > 0, got {ttl}")
        if max_keys < 1:
            raise ValueError(f"the dedupe memory must keep at least one key, got {max_keys}")
        self.ttl = ttl
        self.max_keys = max_keys
        self._clock = clock
        self._expiry: OrderedDict[bytes, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._expiry)

    def __contains__(self, key: bytes) -> bool:
        expiry = self._expiry.get(key)
        return expiry is not None and expiry > self._clock()

    def add(self, key: bytes) -> None:
        """Remember ``key`` for ``ttl`` seconds (re-adding restarts its time)."""
        now = self._clock()
        expiry = self._expiry
        while expiry:
            oldest = next(iter(expiry.values()))
            if oldest > now and len(expiry) < self.max_keys:
                break
            expiry.popitem(last=False)
        expiry[key] = now + self.ttl
        expiry.move_to_end(key)
