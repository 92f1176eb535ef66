"""(b) aiodataloader: one DataLoader per partition, ``max_batch_size=10_000``.

The batch function calls ``issue_rewards`` and then ``wait_for_job``, and maps
the job's listed failures back by index. DataLoader batches whatever was loaded
in one event-loop turn: a burst handed over in large pages makes full batches,
a trickle makes one tiny batch per turn. ``cache=False`` because a long-lived
loader would otherwise keep every future it ever returned.
"""

from __future__ import annotations

import asyncio
import functools

from aiodataloader import DataLoader

import thanx_async as ta
from benchmarks.baselines import Result, results_of

Key = tuple[str, str, str]


class DataLoaderIssuer:
    """Identifiers go through ``loader.load()``; one loader per partition."""

    def __init__(
        self,
        client: ta.ThanxClient,
        *,
        merchant_id: str,
        campaign_id: str,
        variant_id: str,
        max_batch_size: int = 10_000,
    ) -> None:
        self._client = client
        self._defaults = (merchant_id, campaign_id, variant_id)
        self._max_batch_size = max_batch_size
        self._loaders: dict[Key, DataLoader[str, Result]] = {}
        self.batches = 0  # batch function calls, i.e. POSTs it asked for

    def submit(
        self, identifier: str, *, campaign_id: str | None = None, variant_id: str | None = None
    ) -> asyncio.Future[Result]:
        merchant, campaign, variant = self._defaults
        key = (merchant, campaign_id or campaign, variant_id or variant)
        loader = self._loaders.get(key)
        if loader is None:
            loader = self._loaders[key] = DataLoader(
                functools.partial(self._batch, key),
                max_batch_size=self._max_batch_size,
                cache=False,
            )
        future: asyncio.Future[Result] = loader.load(identifier)
        return future

    async def _batch(self, key: Key, identifiers: list[str]) -> list[Result]:
        self.batches += 1
        merchant, campaign, variant = key
        job = await self._client.issue_rewards(
            merchant_id=merchant, campaign_id=campaign, variant_id=variant,
            identifiers=identifiers,
        )  # fmt: skip
        job = await self._client.wait_for_job(job.id, merchant_id=merchant)
        return results_of(job, identifiers)
