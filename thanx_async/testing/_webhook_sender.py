"""Posting the emulator's webhooks: a ticker that finds what is due, and a few senders.

Every ``tick`` seconds (real time) the ticker asks the outbox what is due by
the emulator's clock (jobs are functions of that clock, so there is nothing
to be woken by) and queues it. ``reward_batch.completed`` deliveries jump
the queue: behind a job's 10,000 ``reward.issued`` they would arrive
seconds late. A handful of senders post concurrently, each delivery once,
with Thanx's 15 s limit as the timeout, and record the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import logging
from typing import TYPE_CHECKING, Final

import aiohttp

from thanx_async.testing._webhook_faults import REWARD_BATCH_COMPLETED
from thanx_async.webhooks._signature import SIGNATURE_HEADER

if TYPE_CHECKING:
    from thanx_async.testing._state import EmulatorState
    from thanx_async.testing._webhooks import WebhookDelivery

__all__ = ["WebhookSender"]

logger = logging.getLogger("thanx_async.testing.webhooks")

#: Thanx gives a receiver 15 s to answer.
RECEIVER_TIMEOUT: Final = 15.0
_USER_AGENT: Final = "thanx-async-emulator-webhooks"
_RAW_BYTES_LIMIT: Final = 512 * 1024


class WebhookSender:
    """Delivers an emulator's due webhooks while it runs.

    Args:
        state: the emulator state (its ``webhooks`` outbox and clock).
        concurrency: deliveries in flight at once.
        tick: seconds between two looks for due deliveries.
        timeout: seconds a receiver has to answer.
    """

    def __init__(
        self,
        state: EmulatorState,
        *,
        concurrency: int = 16,
        tick: float = 0.02,
        timeout: float = RECEIVER_TIMEOUT,
    ) -> None:
        self._state = state
        self._concurrency = concurrency
        self._tick = tick
        self._timeout = timeout
        self._queue: asyncio.PriorityQueue[tuple[int, int, WebhookDelivery]] | None = None
        self._order = itertools.count()
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Start the ticker and the senders (in the running loop)."""
        self._queue = asyncio.PriorityQueue()
        self._tasks = [asyncio.create_task(self._ticker(), name="webhook-ticker")]
        self._tasks += [
            asyncio.create_task(self._sending(), name=f"webhook-sender-{n}")
            for n in range(self._concurrency)
        ]

    async def stop(self) -> None:
        """Stop; deliveries not sent yet stay unsent (no ``sent_at``, no status).

        One cut off in flight keeps its ``sent_at`` and gets an ``error``.
        """
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def pump(self) -> int:
        """Queue every delivery due by the clock now; returns how many."""
        if self._queue is None:
            raise RuntimeError("the webhook sender is not running")
        due = self._state.webhooks.collect()
        for delivery in due:
            rank = 0 if delivery.event == REWARD_BATCH_COMPLETED else 1
            self._queue.put_nowait((rank, next(self._order), delivery))
        return len(due)

    async def drain(self) -> None:
        """Queue what is due now, then wait until every queued delivery has been answered."""
        self.pump()
        assert self._queue is not None  # pump() checked
        await self._queue.join()

    async def _ticker(self) -> None:
        while True:
            try:
                self.pump()
            except Exception:  # a bug here must not end deliveries for good
                logger.exception("cannot collect due webhooks; trying again")
            await asyncio.sleep(self._tick)

    async def _sending(self) -> None:
        assert self._queue is not None  # started
        while True:
            _, _, delivery = await self._queue.get()
            try:
                await self._post(delivery)
            except asyncio.CancelledError:
                if delivery.status is None and delivery.sent_at is not None:
                    delivery.error = "cancelled: the emulator stopped"
                raise
            except Exception as error:  # recorded and logged; the sender lives on
                delivery.error = f"{type(error).__name__}: {error}"
                logger.exception("cannot deliver a %s webhook", delivery.event)
            finally:
                self._queue.task_done()

    async def _post(self, delivery: WebhookDelivery) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                connector=aiohttp.TCPConnector(limit=self._concurrency),
            )
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: delivery.signature,
            "User-Agent": _USER_AGENT,
        }
        body = delivery.body
        # aiohttp warns (ResourceWarning) about raw bytes over 1 MiB, and a
        # reward_batch.completed listing thousands of failures can be that big.
        data = io.BytesIO(body) if len(body) > _RAW_BYTES_LIMIT else body
        delivery.sent_at = self._state.clock()
        try:
            async with self._session.post(delivery.url, data=data, headers=headers) as response:
                await response.read()
                delivery.status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            delivery.error = f"{type(error).__name__}: {error}" if str(error) else repr(error)
