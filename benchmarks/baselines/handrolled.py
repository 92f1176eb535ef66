"""(c) A hand-rolled ``asyncio.Queue`` batcher: what a competent user writes in ~50 lines.

One queue and one worker. The worker drains the queue into per-partition
buffers, sends a buffer when it holds ``max_batch_size`` identifiers or
``max_wait`` seconds after its first one (or at close), and each batch runs in
its own task: ``issue_rewards``, ``wait_for_job``, resolve the futures by index.
No back-pressure, no dedupe, no deterministic idempotency key (the client makes
a random one per call, which still makes its own retries safe).
"""

from __future__ import annotations

import asyncio

import thanx_async as ta
from benchmarks.baselines import Result, results_of

Key = tuple[str, str]
Item = tuple[Key, str, "asyncio.Future[Result]"]


class QueueBatcher:
    """Size/time-flushing batcher over one ``asyncio.Queue``."""

    def __init__(
        self,
        client: ta.ThanxClient,
        *,
        merchant_id: str,
        campaign_id: str,
        variant_id: str,
        max_batch_size: int = 10_000,
        max_wait: float = 1.0,
    ) -> None:
        self._client, self._merchant = client, merchant_id
        self._default: Key = (campaign_id, variant_id)
        self._max_batch_size, self._max_wait = max_batch_size, max_wait
        self._queue: asyncio.Queue[Item | None] = asyncio.Queue()
        self._sending: set[asyncio.Task[None]] = set()
        self._worker = asyncio.get_running_loop().create_task(self._run())

    def submit(
        self, identifier: str, *, campaign_id: str | None = None, variant_id: str | None = None
    ) -> asyncio.Future[Result]:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        key = (campaign_id, variant_id) if campaign_id and variant_id else self._default
        self._queue.put_nowait((key, identifier, future))
        return future

    async def aclose(self) -> None:
        """Send everything buffered, wait for every batch, stop."""
        self._queue.put_nowait(None)
        await self._worker
        await asyncio.gather(*self._sending)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        buffers: dict[Key, list[tuple[str, asyncio.Future[Result]]]] = {}
        deadlines: dict[Key, float] = {}
        closing = False
        while not closing:
            timeout = min(deadlines.values()) - loop.time() if deadlines else None
            items: list[Item | None] = []
            if timeout is None or timeout > 0:
                try:
                    async with asyncio.timeout(timeout):
                        items.append(await self._queue.get())
                except TimeoutError:
                    pass
            while not self._queue.empty():  # take everything already queued in one go
                items.append(self._queue.get_nowait())
            for item in items:
                if item is None:
                    closing = True
                    continue
                key, identifier, future = item
                buffer = buffers.setdefault(key, [])
                if not buffer:
                    deadlines[key] = loop.time() + self._max_wait
                buffer.append((identifier, future))
                if len(buffer) >= self._max_batch_size:
                    self._send(key, buffers.pop(key))
                    del deadlines[key]
            now = loop.time()
            for key in [k for k, due in deadlines.items() if closing or due <= now]:
                self._send(key, buffers.pop(key))
                del deadlines[key]

    def _send(self, key: Key, batch: list[tuple[str, asyncio.Future[Result]]]) -> None:
        task = asyncio.get_running_loop().create_task(self._issue(key, batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _issue(self, key: Key, batch: list[tuple[str, asyncio.Future[Result]]]) -> None:
        identifiers = [identifier for identifier, _ in batch]
        try:
            job = await self._client.issue_rewards(
                merchant_id=self._merchant, campaign_id=key[0], variant_id=key[1],
                identifiers=identifiers,
            )  # fmt: skip
            job = await self._client.wait_for_job(job.id, merchant_id=self._merchant)
        except Exception as exc:  # noqa: BLE001 - every caller learns why, none waits forever
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results_of(job, identifiers), strict=True):
            if not future.done():
                future.set_result(result)
