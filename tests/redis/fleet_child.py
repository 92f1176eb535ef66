"""One process of a fleet sharing one credential through a RedisRateLimiter.

Run as ``python tests/redis/fleet_child.py BASE_URL REDIS_URL NAME COUNT BATCH
PER_WINDOW WINDOW``. It waits for a go line on stdin (so every process starts
together), submits ``COUNT`` identifiers of its own (``NAME-<i>@example.com``)
through a RewardBatcher, and prints one line ``RESULT {json}``: its outcome
counts and its client's counters.
"""

from __future__ import annotations

import asyncio
import collections
import json
import sys

import thanx_async as ta
from thanx_async.redis import RedisRateLimiter
from thanx_async.testing import (
    DEFAULT_ACCESS_TOKEN,
    DEFAULT_CAMPAIGN_ID,
    DEFAULT_CLIENT_ID,
    DEFAULT_MERCHANT_ID,
    DEFAULT_VARIANT_ID,
)


async def main(base_url: str, redis_url: str, name: str, count: int, batch: int) -> None:
    per_window, window = int(sys.argv[6]), float(sys.argv[7])
    rate = ta.RateLimit(per_second=5, per_window=per_window, window=window)
    limiter = RedisRateLimiter(redis_url, rate_limit=rate)
    client = ta.ThanxClient(
        client_id=DEFAULT_CLIENT_ID,
        access_token=DEFAULT_ACCESS_TOKEN,
        base_url=base_url,
        limiter=limiter,
    )
    print("READY", flush=True)  # noqa: T201 - it talks to the parent test through stdout
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    async with (
        client,
        ta.RewardBatcher(
            client,
            merchant_id=DEFAULT_MERCHANT_ID,
            campaign_id=DEFAULT_CAMPAIGN_ID,
            variant_id=DEFAULT_VARIANT_ID,
            max_batch_size=batch,
            max_wait=0.05,
        ) as batcher,
    ):
        futures = [await batcher.submit(f"{name}-{i}@example.com") for i in range(count)]
        results = await asyncio.gather(*futures, return_exceptions=True)
    statuses = collections.Counter(
        type(r).__name__ if isinstance(r, BaseException) else r.status.value for r in results
    )
    stats = client.stats
    summary = {
        "outcomes": dict(statuses),
        "requests": stats.requests,
        "posts": stats.posts,
        "rate_limited": stats.rate_limited,
        "limiter": limiter.stats().granted,
    }
    print("RESULT " + json.dumps(summary), flush=True)  # noqa: T201


if __name__ == "__main__":
    base, redis_url, name, count, batch = sys.argv[1:6]
    asyncio.run(main(base, redis_url, name, int(count), int(batch)))
