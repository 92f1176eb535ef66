"""Recent results in memory: what answers a resubmission when there is no journal.

Without a journal, a person submitted again after their outcome would land
in a different batch (different neighbours, so a different idempotency key)
and be rewarded again. The batcher remembers the last ``capacity`` results
for ``window`` seconds, so a resubmission of the same (partition, identifier,
dedupe key) within both bounds gets the same answer and nothing is sent. Only
results a job gave are remembered (ISSUED, FAILED, UNKNOWN, JobFailedError):
a rejection that issued nothing is tried again, as with the journal.

Layout, for memory: one dictionary per partition maps an entry's key (the
normalised value, which the outcome holds anyway) to its result, and a queue
of runs (results remembered together, such as a resolved slice of a batch)
says what to forget first. A remembered result costs its dictionary slot,
one list pointer and the outcome itself (measured: about 190 bytes per
result; see docs/performance.md). Expired runs are dropped whenever the memory is used.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence

from thanx_async._accumulator import EntryKey, Partition
from thanx_async._outcomes import IssuanceOutcome

__all__ = ["DEFAULT_RECENT_RESULTS", "RecentResults", "Result"]

#: Results remembered by default (without a journal).
DEFAULT_RECENT_RESULTS = 100_000

#: What a job said about one person: an outcome, or the JobFailedError of its job.
Result = IssuanceOutcome | BaseException


class RecentResults:
    """A bounded, time-limited memory of results, forgotten oldest first.

    Args:
        capacity: results kept at most (whole runs of the oldest go first); 0 keeps none.
        window: seconds a result answers resubmissions.
        clock: monotonic seconds.
    """

    __slots__ = ("_clock", "_runs", "capacity", "results", "size", "window")

    def __init__(
        self, capacity: int, window: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.capacity = capacity
        self.window = window
        self._clock = clock
        #: Per partition, entry key -> result. Read directly by the submit path.
        self.results: dict[Partition, dict[EntryKey, Result]] = {}
        self._runs: deque[tuple[float, Partition, Sequence[EntryKey]]] = deque()
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def get(self, partition: Partition, key: EntryKey) -> Result | None:
        """The remembered result of this submission, if any and still within the window."""
        self._expire(self._clock())
        known = self.results.get(partition)
        return None if known is None else known.get(key)

    def remember(self, partition: Partition, key: EntryKey, result: Result) -> None:
        """Keep one result."""
        self.remember_many(partition, (key,), (result,))

    def remember_many(
        self, partition: Partition, keys: Sequence[EntryKey], results: Sequence[Result]
    ) -> None:
        """Keep a run of one partition's results (``keys[i]`` answered ``results[i]``)."""
        if not self.capacity or not keys:
            return
        now = self._clock()
        self._expire(now)
        known = self.results.get(partition)
        if known is None:
            known = self.results[partition] = {}
        known.update(zip(keys, results, strict=True))
        self._runs.append((now, partition, keys))
        self.size += len(keys)
        while self.size > self.capacity:
            self._drop_oldest()

    def _expire(self, now: float) -> None:
        runs, cutoff = self._runs, now - self.window
        while runs and runs[0][0] < cutoff:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        # A key lives in one run at most: it is remembered only when its result
        # arrives, and a remembered key is answered from here, never re-sent
        # (until this run is dropped).
        _, partition, keys = self._runs.popleft()
        self.size -= len(keys)
        known = self.results[partition]
        for key in keys:
            known.pop(key, None)
        if not known:
            del self.results[partition]
