"""Process B of the relay tests: a batcher waiting on jobs whose webhooks land in another process.

Run as ``python tests/redis/relay_child.py BASE_URL REDIS_URL CHANNEL COUNT``.
It serves no webhook URL: its batcher learns that its jobs ended only from a
WebhookRelay subscribed to CHANNEL. Once subscribed it prints ``READY``,
waits for a line on stdin, submits COUNT identifiers (``relay<i>@example.com``,
every 50th one unknown to the emulator), and prints one line
``RESULT {json}``: its outcome counts, its batcher's polls and the relay's counters.
"""

from __future__ import annotations

import asyncio
import collections
import json
import sys

import thanx_async as ta
from thanx_async.redis import WebhookRelay
from thanx_async.testing import (
    DEFAULT_ACCESS_TOKEN,
    DEFAULT_CAMPAIGN_ID,
    DEFAULT_CLIENT_ID,
    DEFAULT_MERCHANT_ID,
    DEFAULT_VARIANT_ID,
)


def person(i: int) -> str:
    """The i-th identifier (every 50th one is unknown to the emulator)."""
    return f"unknown.relay{i}@example.com" if i % 50 == 0 else f"relay{i}@example.com"


async def main(base_url: str, redis_url: str, channel: str, count: int) -> None:
    client = ta.ThanxClient(
        client_id=DEFAULT_CLIENT_ID,
        access_token=DEFAULT_ACCESS_TOKEN,
        base_url=base_url,
        rate_limit=ta.RateLimit(per_second=1000, per_window=100_000),
    )
    batcher = ta.RewardBatcher(
        client,
        merchant_id=DEFAULT_MERCHANT_ID,
        campaign_id=DEFAULT_CAMPAIGN_ID,
        variant_id=DEFAULT_VARIANT_ID,
        max_batch_size=1_000,
        max_wait=0.05,
    )
    relay = WebhookRelay(redis_url, channel=channel, batchers=[batcher])
    async with client, batcher, relay:
        if not relay.subscribed:
            sys.exit("the relay could not subscribe")
        print("READY", flush=True)  # noqa: T201 - it talks to the parent test through stdout
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        futures = [await batcher.submit(person(i)) for i in range(count)]
        results = await asyncio.gather(*futures, return_exceptions=True)
    statuses = collections.Counter(
        type(r).__name__ if isinstance(r, BaseException) else r.status.value for r in results
    )
    failed_as_expected = all(
        isinstance(r, ta.IssuanceOutcome) and r.issued == (i % 50 != 0)
        for i, r in enumerate(results)
    )
    summary = {
        "outcomes": dict(statuses),
        "as_expected": failed_as_expected,
        "jobs": len({r.job_id for r in results if isinstance(r, ta.IssuanceOutcome)}),
        "polls": batcher.stats().polls,
        "relayed": relay.relayed,
        "published": relay.published,
    }
    print("RESULT " + json.dumps(summary), flush=True)  # noqa: T201


if __name__ == "__main__":
    base, redis_url, channel, count = sys.argv[1:5]
    asyncio.run(main(base, redis_url, channel, int(count)))
