"""What RewardBatcher needs from a journal: the protocol both backends implement.

Two backends keep the same promises (DESIGN.md, "Durability" and "Wave 2"):
:class:`~thanx_async.Journal` (SQLite, one process, the embedded default) and
``thanx_async.redis.RedisJournal`` (a ledger shared by a fleet). The batcher
cannot tell them apart: it talks to :class:`JournalBackend`, and to
:class:`FleetJournal` when the backend is shared by several processes.

Conventions every backend keeps:

* Item and batch ids are positive ``int``s, unique within the journal.
* A *key* is (partition, identifier value, dedupe key); one key is one
  issuance: at most one unfinished item per key, anywhere.
* Writes return futures and are grouped: everything asked during one event
  loop turn goes to the store together (one transaction, one round trip),
  and each operation succeeds or fails alone (its future gets a
  :class:`~thanx_async.JournalError`); only a failure of the whole group
  (a full disk, an unreachable server) fails every operation of it.
* A write's future resolves once the write is durable by the backend's own
  standard (SQLite: committed with its ``synchronous`` setting; Redis:
  acknowledged by the server, which persists per its ``appendfsync``).
* Results (batches in state ``done``) are kept for ``dedupe_window`` seconds
  after they finished, then may be forgotten.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Protocol, runtime_checkable

from thanx_async._journal_format import Existing, Recorded, Recovered, SealRecord

__all__ = ["AdmitItem", "FleetJournal", "JournalBackend", "LeaseLostError", "RateLogStore"]

#: (partition (merchant, campaign, variant), identifier type, normalised value, dedupe key)
AdmitItem = tuple[tuple[str, str, str], str, str, str | None]


class LeaseLostError(Exception):
    """A fleet journal refused a seal: some items now belong to another process.

    Raised (as the exception of :meth:`JournalBackend.seal`'s future) when this
    process's lease expired and a live process adopted its unsealed items; the
    adopter issues them. Not a :class:`~thanx_async.ThanxError`: the batcher
    handles it and callers never see it.

    Attributes:
        item_ids: the items of the refused seal that this process no longer owns.
    """

    def __init__(self, item_ids: Sequence[int]) -> None:
        self.item_ids = list(item_ids)
        super().__init__(f"{len(self.item_ids)} items now belong to another process")


@runtime_checkable
class JournalBackend(Protocol):
    """Durable admission, batches and results for one batcher (see the module docstring)."""

    #: Seconds a finished result answers resubmissions.
    dedupe_window: float

    async def open(self) -> Recovered:
        """Take ownership and return the unfinished work this process must resume.

        SQLite: everything unfinished in the file (its last owner is gone).
        A fleet journal: the work of processes whose lease expired, adopted
        now (see :meth:`FleetJournal.adopt`); its own new lease starts.

        Raises:
            JournalError: the store is unusable (corrupt, foreign, locked, unreachable).
        """
        ...

    async def aclose(self) -> None:
        """Finish queued writes and release the store (a fleet journal drops its lease)."""
        ...

    def admit_many(
        self, items: Sequence[AdmitItem]
    ) -> asyncio.Future[list[int | Recorded | Existing]]:
        """Record new items; per item, in order, the answer below.

        * its new item id (``int``): admitted, unsealed, owned by this process;
        * :class:`Recorded`: the key finished within ``dedupe_window`` (its
          batch's final job JSON, its position and the batch's size);
        * :class:`Existing`: the key is admitted and unfinished, here or (in a
          fleet) in another process.
        """
        ...

    def seal(
        self, partition: tuple[str, str, str], key: str, body: bytes, item_ids: Sequence[int]
    ) -> asyncio.Future[int]:
        """Record a sealed batch (exact body bytes and key) and each item's position; its id.

        A fleet journal refuses (the future raises :class:`LeaseLostError`)
        when any item is no longer owned by this process.
        """
        ...

    def split(
        self,
        batch_id: int,
        partition: tuple[str, str, str],
        parts: Sequence[SealRecord],
        *,
        dropped: Sequence[int] = (),
    ) -> asyncio.Future[list[int]]:
        """Replace a refused batch by new batches of its items (ids in order), minus ``dropped``.

        Atomic: no item is ever in no batch, or in a batch that no longer exists.
        """
        ...

    def accepted(self, batch_id: int, job_id: str) -> asyncio.Future[None]:
        """Record the job a batch was accepted as."""
        ...

    def finished(self, batch_id: int, job_json: bytes) -> asyncio.Future[None]:
        """Record a batch's final job: from now on its items answer resubmissions."""
        ...

    def reported(self, batch_id: int) -> asyncio.Future[None]:
        """The outcomes of a finished batch were handed to its callers or ``on_outcome``.

        Until then a finished batch stays with its process: if it dies, the
        next opener (or adopter) gets it back with ``RecoveredBatch.final`` and
        reports its outcomes from the record. Idempotent; a no-op for a batch
        that is not finished.
        """
        ...

    def forget(
        self, item_ids: Iterable[int], *, batch_id: int | None = None
    ) -> asyncio.Future[None]:
        """Drop items that issued nothing (cancelled, refused), and their batch if given."""
        ...


@runtime_checkable
class FleetJournal(JournalBackend, Protocol):
    """A journal shared by several processes, each holding a lease (heartbeat)."""

    #: Seconds without a heartbeat after which a process's work is adopted.
    lease: float

    async def adopt(self) -> Recovered:
        """Take over the work of every process whose lease expired (exactly one adopter wins).

        Returns what was adopted, as :meth:`JournalBackend.open` does: unsealed
        items (now this process's, to batch anew), sealed batches (to re-POST
        with their recorded bytes and key) and accepted ones (to follow).
        """
        ...

    def watch(self, item_id: int) -> asyncio.Future[Recorded | None]:
        """Resolve when the item (owned by any process) ends.

        :class:`Recorded` once its batch finished; ``None`` if it was forgotten
        (it issued nothing, so a resubmission tries again). Resolves at once if
        it already ended.
        """
        ...


@runtime_checkable
class RateLogStore(Protocol):
    """A journal that can keep an in-process rate limiter's recent log across restarts.

    Only meaningful for one process (the SQLite journal): a shared limiter
    keeps its log where it counts, in Redis.
    """

    def save_ratelog(self, entries: Sequence[tuple[float, float | None]]) -> asyncio.Future[None]:
        """Replace the saved log (wall-clock ``(start, finish)`` seconds)."""
        ...
