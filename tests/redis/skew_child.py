"""A process whose clocks are off by OFFSET seconds, taking COUNT slots of a shared budget.

Run as ``python tests/redis/skew_child.py REDIS_URL CLIENT_ID OFFSET COUNT``.
Both ``time.time`` and ``time.monotonic`` (the event loop's clock) are shifted
before anything else runs, as on a host whose clock is wrong. It waits for a go
line on stdin, then prints one line ``STAMPS [...]``: the Redis server's time
inside each slot it held.
"""

from __future__ import annotations

import sys
import time

_OFFSET = float(sys.argv[3])
_time, _monotonic = time.time, time.monotonic
time.time = lambda: _time() + _OFFSET
time.monotonic = lambda: _monotonic() + _OFFSET

import asyncio  # noqa: E402 - after the clocks are shifted
import json  # noqa: E402

import redis.asyncio  # noqa: E402

import thanx_async as ta  # noqa: E402
from thanx_async.redis import RedisRateLimiter  # noqa: E402

RATE = ta.RateLimit(per_second=3, second=0.2, per_window=12, window=1.0)


async def main(url: str, client_id: str, count: int) -> None:
    client = redis.asyncio.Redis.from_url(url)
    async with RedisRateLimiter(url, rate_limit=RATE, client_id=client_id) as limiter:
        print("READY", flush=True)  # noqa: T201 - it talks to the parent test through stdout
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        stamps: list[float] = []

        async def one() -> None:
            async with limiter.slot():
                seconds, micros = await client.time()
                stamps.append(seconds + micros / 1e6)

        await asyncio.gather(*(one() for _ in range(count)))
    await client.aclose()
    print("STAMPS " + json.dumps(stamps), flush=True)  # noqa: T201


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[4])))
