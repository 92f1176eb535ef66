"""One consumer of a fleet: the process the fleet crash test runs three of and kills one of.

Run as ``python fleet_crash_child.py EMULATOR_URL REDIS_URL LEDGER_NAME LEASE``.
It shares one credential, one rate budget (RedisRateLimiter) and one ledger
(RedisJournal) with its siblings, and takes commands on stdin:

* ``SUBMIT a b``: submit identifiers a..b-1 (as a consumer handles events),
  printing ``ACK i`` once each ``submit()`` returned (the event is acked);
* ``FINISH``: wait for every outcome, close, print ``RESULT`` and exit.

It prints ``DONE i status`` when a caller's future resolves, ``ADOPTED i status``
for each outcome ``on_outcome`` receives (work adopted from a dead sibling),
the SDK's INFO log lines as ``LOG ...``, and ``MARK submitted i`` progress
marks, so the parent can kill it at a chosen moment.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sys

import thanx_async as ta
from thanx_async.redis import RedisJournal, RedisRateLimiter
from thanx_async.testing import (
    DEFAULT_ACCESS_TOKEN,
    DEFAULT_CAMPAIGN_ID,
    DEFAULT_CLIENT_ID,
    DEFAULT_MERCHANT_ID,
    DEFAULT_VARIANT_ID,
)


def identifier(i: int) -> str:
    """Person ``i``: every 97th is unknown to the emulator (FAILED, never issued)."""
    return f"unknown.{i}@example.com" if i % 97 == 0 else f"user{i}@example.com"


def number(value: str) -> int:
    return int(value.split("@", maxsplit=1)[0].rsplit(".", 1)[-1].removeprefix("user"))


def status(result: ta.IssuanceOutcome | BaseException) -> str:
    return type(result).__name__ if isinstance(result, BaseException) else result.status.value


def done(i: int, future: asyncio.Future[ta.IssuanceOutcome]) -> None:
    print(f"DONE {i} {status(future.exception() or future.result())}", flush=True)


async def main(url: str, redis_url: str, name: str, lease: float) -> None:
    limit = ta.RateLimit(per_second=50, per_window=100_000)
    client = ta.ThanxClient(
        client_id=DEFAULT_CLIENT_ID,
        access_token=DEFAULT_ACCESS_TOKEN,
        base_url=url,
        retry=ta.RetryPolicy(initial_backoff=0.05, max_backoff=0.2),
        rate_limit=limit,
        limiter=RedisRateLimiter(redis_url, rate_limit=limit),
    )

    def adopted(outcome: ta.IssuanceOutcome) -> None:
        print(f"ADOPTED {number(outcome.identifier.value)} {outcome.status.value}", flush=True)

    journal = RedisJournal(redis_url, name=name, lease=lease)
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    async with (
        client,
        ta.RewardBatcher(
            client,
            merchant_id=DEFAULT_MERCHANT_ID,
            campaign_id=DEFAULT_CAMPAIGN_ID,
            variant_id=DEFAULT_VARIANT_ID,
            journal=journal,
            max_batch_size=100,
            max_wait=0.05,
            on_outcome=adopted,
        ) as batcher,
    ):
        futures: list[asyncio.Future[ta.IssuanceOutcome]] = []
        while line := (await reader.readline()).decode().strip():
            command, *args = line.split()
            if command == "FINISH":
                break
            start, end = int(args[0]), int(args[1])
            for i in range(start, end):
                future = await batcher.submit(identifier(i))
                print(f"ACK {i}", flush=True)
                future.add_done_callback(functools.partial(done, i))
                futures.append(future)
                if i % 50 == 0:
                    print(f"MARK submitted {i}", flush=True)
        await asyncio.gather(*futures, return_exceptions=True)
    print("RESULT", flush=True)


if __name__ == "__main__":
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("LOG %(message)s"))
    logging.getLogger("thanx_async").addHandler(handler)
    logging.getLogger("thanx_async").setLevel(logging.INFO)
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])))
