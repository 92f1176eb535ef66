"""RedisJournal's lease: the heartbeat that keeps it, and adoption of expired ones' work.

The heartbeat renews this process's lease every ``lease / 3`` seconds and
never dies: while Redis is unreachable it logs once and keeps trying; when it
finds the lease was taken (the process was silent too long and another one
adopted its work), it logs that and holds a new lease, for new work.

Adoption claims, one owner at a time, the work of every process whose lease
expired (one atomic script each: exactly one adopter gets it), then reads what
it took: unsealed items, unfinished batches, and finished batches whose
outcomes were never reported (with their final job). A claim whose answer did
not arrive is asked again (by its operation id, so it returns the same work)
at the next adoption: nothing claimed is left unreported while this process
lives.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from thanx_async._errors import JournalError
from thanx_async._journal_format import Recovered, RecoveredBatch, RecoveredItem
from thanx_async.redis._journal_codec import recovered_batch, recovered_item, text
from thanx_async.redis._journal_link import SCRIPTS, Arg, Link
from thanx_async.redis._journal_watch import Watchers

__all__ = ["Lease"]

logger = logging.getLogger("thanx_async.journal")

#: How long Redis keeps a claim's answer (ms): until the next adopt() asks again.
_KEEP_CLAIM = 3_600_000


class Lease:
    """This process's lease, and adoption of other processes' work.

    Args:
        link: the journal's line to Redis.
        head: the arguments every script starts with, for an operation id and
            how long to keep its reply (None: the journal's default).
        opid: a new operation id.
        watchers: checked again when Redis answers after an outage.
        lease: seconds without renewal after which the work may be adopted.
        name: the journal's name, for logs.
    """

    def __init__(
        self,
        link: Link,
        head: Callable[[str, int | None], list[Arg]],
        opid: Callable[[], str],
        watchers: Watchers,
        *,
        lease: float,
        name: str,
    ) -> None:
        self._link = link
        self._head = head
        self._opid = opid
        self._watchers = watchers
        self._lease = lease
        self._name = name
        self._unclaimed: list[str] = []  # claims whose answer never arrived
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the heartbeat."""
        self.task = asyncio.get_running_loop().create_task(
            self.beat(), name=f"thanx_async journal {self._name} heartbeat"
        )

    async def stop(self) -> None:
        """Stop the heartbeat."""
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            self.task = None

    async def beat(self) -> None:
        """Renew the lease every lease/3 seconds, forever."""
        failing = False
        while True:
            await asyncio.sleep(self._lease / 3)
            try:
                renew = SCRIPTS["RENEW"]
                held = await self._link.one(renew, self._head("", None), timeout=self._lease / 3)
            except JournalError as exc:
                if not failing:
                    logger.warning(
                        "%s; this process's work is adopted by another if it lasts %gs",
                        exc, self._lease,
                    )  # fmt: skip
                failing = True
                continue
            except Exception:  # a background task never dies silently
                logger.exception("journal %r: renewing the lease failed", self._name)
                continue
            if failing:
                logger.info("journal %r: Redis answers again", self._name)
                self._watchers.recheck()
            failing = False
            if int(held) == 0:
                logger.warning(
                    "journal %r: this process's lease had expired and its work was adopted by"
                    " another process; it goes on with new work only",
                    self._name,
                )
            self._watchers.retry()

    async def adopt(self, forced: str = "") -> Recovered:
        """Claim and read the work of every owner whose lease expired (and of ``forced``).

        Raises:
            JournalError: Redis is unreachable; what was claimed is returned next time.
        """
        unsealed: list[RecoveredItem] = []
        batches: list[RecoveredBatch] = []
        while True:
            opid = self._unclaimed.pop(0) if self._unclaimed else self._opid()
            try:
                args = [*self._head(opid, _KEEP_CLAIM), forced]
                claimed = text(await self._link.one(SCRIPTS["CLAIM"], args))
                if not claimed:
                    break
                victim, items, bids = claimed.split(" ")
                item_ids = [int(i) for i in items.split(",") if i]
                batch_ids = [int(b) for b in bids.split(",") if b]
                found_items, found_batches = await self._read(item_ids, batch_ids)
            except JournalError:
                self._unclaimed.append(opid)  # its answer is kept in Redis for an hour
                raise
            forced = ""
            unsealed += found_items
            batches += found_batches
            if item_ids or batch_ids:
                logger.info(
                    "journal %r: adopted the work of %s: %d unsealed identifiers, %d batches"
                    " (%d of them finished, to report)",
                    self._name, victim, len(found_items), len(found_batches),
                    sum(b.final is not None for b in found_batches),
                )  # fmt: skip
        unsealed.sort(key=lambda item: item.row_id)
        batches.sort(key=lambda batch: batch.batch_id)
        return Recovered(unsealed, batches, [])

    async def _read(
        self, item_ids: list[int], batch_ids: list[int]
    ) -> tuple[list[RecoveredItem], list[RecoveredBatch]]:
        args = [
            *self._head("", None),
            str(len(item_ids)),
            *map(str, item_ids),
            *map(str, batch_ids),
        ]
        items, batches = await self._link.one(SCRIPTS["READ"], args)
        return [recovered_item(i) for i in items], [recovered_batch(b) for b in batches]
