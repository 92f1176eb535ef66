"""(a) Naive: one ``issue_rewards`` call per identifier, then ``wait_for_job``.

What the Thanx docs warn against ("may result in rate limiting"): every person
costs one POST and at least one poll, so the request budget, not the client,
sets the pace.
"""

from __future__ import annotations

import asyncio

import thanx_async as ta
from benchmarks.baselines import Result, results_of


class NaiveIssuer:
    """Issues each identifier on its own, in its own task."""

    def __init__(
        self, client: ta.ThanxClient, *, merchant_id: str, campaign_id: str, variant_id: str
    ) -> None:
        self._client = client
        self._defaults = (merchant_id, campaign_id, variant_id)
        self._tasks: set[asyncio.Task[Result]] = set()

    def submit(
        self, identifier: str, *, campaign_id: str | None = None, variant_id: str | None = None
    ) -> asyncio.Future[Result]:
        merchant, campaign, variant = self._defaults
        task = asyncio.get_running_loop().create_task(
            self._issue(identifier, merchant, campaign_id or campaign, variant_id or variant)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _issue(self, identifier: str, merchant: str, campaign: str, variant: str) -> Result:
        job = await self._client.issue_rewards(
            merchant_id=merchant, campaign_id=campaign, variant_id=variant,
            identifiers=[identifier],
        )  # fmt: skip
        job = await self._client.wait_for_job(job.id, merchant_id=merchant)
        return results_of(job, [identifier])[0]

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
