"""The process the crash test kills: submits identifiers through a journaled batcher.

Run as ``python tests/crash_child.py URL JOURNAL COUNT``. It logs the SDK's
INFO lines to stdout (the parent kills it when a chosen line appears), marks
its own progress every 50 submissions, and on a clean finish prints one line
``RESULT {json}`` with the outcome of every identifier.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import sys

import thanx_async as ta
from thanx_async.testing import (
    DEFAULT_ACCESS_TOKEN,
    DEFAULT_CAMPAIGN_ID,
    DEFAULT_CLIENT_ID,
    DEFAULT_MERCHANT_ID,
    DEFAULT_VARIANT_ID,
)


def identifiers(count: int) -> list[str]:
    """The stream: every 97th person is unknown to the emulator (FAILED, never issued)."""
    return [
        f"unknown.{i}@example.com" if i % 97 == 0 else f"user{i}@example.com" for i in range(count)
    ]


async def main(url: str, journal: str, count: int) -> None:
    client = ta.ThanxClient(
        client_id=DEFAULT_CLIENT_ID,
        access_token=DEFAULT_ACCESS_TOKEN,
        base_url=url,
        retry=ta.RetryPolicy(initial_backoff=0.05, max_backoff=0.2),
        rate_limit=ta.RateLimit(per_second=50, per_window=100_000),
    )
    async with (
        client,
        ta.RewardBatcher(
            client,
            merchant_id=DEFAULT_MERCHANT_ID,
            campaign_id=DEFAULT_CAMPAIGN_ID,
            variant_id=DEFAULT_VARIANT_ID,
            journal=journal,
            max_batch_size=200,
            max_wait=0.05,
        ) as batcher,
    ):
        futures = []
        for i, value in enumerate(identifiers(count)):
            futures.append(await batcher.submit(value))
            if i % 50 == 0:
                print(f"MARK submitted {i}", flush=True)
        results = await asyncio.gather(*futures, return_exceptions=True)
    outcomes: dict[str, str] = {}
    for value, result in zip(identifiers(count), results, strict=True):
        outcomes[value] = (
            type(result).__name__ if isinstance(result, BaseException) else result.status.value
        )
    print("RESULT " + json.dumps(dict(collections.Counter(outcomes.values()))), flush=True)


if __name__ == "__main__":
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("LOG %(message)s"))
    logging.getLogger("thanx_async").addHandler(handler)
    logging.getLogger("thanx_async").setLevel(logging.INFO)
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
