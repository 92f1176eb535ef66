"""One process of the W5 fleet: ``python -m benchmarks._fleet_child '<json spec>'``.

It builds a ``ThanxClient`` whose limiter is a :class:`RedisRateLimiter` on the
fleet's Redis, and a ``RewardBatcher`` on it, prints ``READY``, and waits for
``GO <t0>`` on stdin: ``t0`` is a ``time.monotonic()`` instant (one clock for
every process on Linux), so the whole fleet starts streaming at once. It then
submits ``count`` identifiers of its own at ``rate`` per second, waits for
every outcome (up to ``deadline`` seconds after its last submission) and prints
one line ``RESULT {json}``: its outcomes, the instants of its stream's end and
last outcome, its client's, batcher's and limiter's counters, and a sample of
them every ``sample`` seconds (what was pending and queued when).
"""

from __future__ import annotations

import asyncio
import collections
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import thanx_async as ta
from benchmarks._measure import percentile
from thanx_async.redis import RedisRateLimiter
from thanx_async.testing import (
    DEFAULT_ACCESS_TOKEN,
    DEFAULT_CAMPAIGN_ID,
    DEFAULT_CLIENT_ID,
    DEFAULT_MERCHANT_ID,
    DEFAULT_VARIANT_ID,
)

#: Seconds between two submission rounds (each submits whatever is due).
TICK = 0.005


def identifiers(prefix: str, count: int) -> list[str]:
    """Distinct identifiers of one process, all known to the emulator (so all issued)."""
    return [f"{prefix}-{i}@example.com" for i in range(count)]


async def _sample(
    batcher: ta.RewardBatcher, limiter: RedisRateLimiter, t0: float, every: float, out: list[Any]
) -> None:
    while True:
        b, lim = batcher.stats(), limiter.stats()
        out.append(
            [
                round(time.monotonic() - t0, 2),
                b.submitted,
                b.pending,
                b.sealed_batches,
                b.posts,
                b.polls,
                b.issued,
                lim.queued,
                lim.in_flight,
                int(limiter.saturated),
            ]
        )
        await asyncio.sleep(every)


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    rate = ta.RateLimit(
        per_second=spec["per_second"], per_window=spec["per_window"], window=spec["window"]
    )
    limiter = RedisRateLimiter(spec["redis_url"], rate_limit=rate)
    client = ta.ThanxClient(
        client_id=DEFAULT_CLIENT_ID,
        access_token=DEFAULT_ACCESS_TOKEN,
        base_url=spec["base_url"],
        limiter=limiter,
    )
    count, per_s = spec["count"], spec["rate"]
    idents = identifiers(spec["prefix"], count)
    submitted_at = [0.0] * count
    done_at = [0.0] * count
    loop = asyncio.get_running_loop()
    print("READY", flush=True)
    line = await loop.run_in_executor(None, sys.stdin.readline)
    t0 = float(line.split()[1])
    samples: list[Any] = []
    async with (
        client,
        ta.RewardBatcher(
            client,
            merchant_id=DEFAULT_MERCHANT_ID,
            campaign_id=DEFAULT_CAMPAIGN_ID,
            variant_id=DEFAULT_VARIANT_ID,
            **spec["batcher"],
        ) as batcher,
    ):
        await asyncio.sleep(max(0.0, t0 - time.monotonic()))
        sampler = loop.create_task(_sample(batcher, limiter, t0, spec["sample"], samples))
        futures: list[asyncio.Future[ta.IssuanceOutcome]] = []

        def stamper(index: int) -> Callable[[object], None]:
            def stamp(_: object) -> None:
                done_at[index] = time.monotonic()

            return stamp

        i = 0
        while i < count:
            due = min(count, int((time.monotonic() - t0) * per_s) + 1)
            while i < due:
                future = await batcher.submit(idents[i])
                submitted_at[i] = time.monotonic()
                future.add_done_callback(stamper(i))
                futures.append(future)
                i += 1
            await asyncio.sleep(TICK)
        stream_end = time.monotonic()
        # asyncio.wait, not gather: a timeout must leave the futures alone (cancelling
        # a gather would cancel them, and the batcher would count them as abandoned).
        _, late = await asyncio.wait(futures, timeout=spec["deadline"])
        timed_out = bool(late)
        unresolved = len(late)
        results = [(f.exception() or f.result()) if f.done() else TimeoutError() for f in futures]
        finished = time.monotonic()
        sampler.cancel()
        bstats, lstats, cstats = batcher.stats(), limiter.stats(), client.stats
    outcomes = collections.Counter(
        type(r).__name__ if isinstance(r, BaseException) else r.status.value for r in results
    )
    waits = sorted(d - s for s, d in zip(submitted_at, done_at, strict=True) if d)
    last_outcome = max(done_at)
    return {
        "prefix": spec["prefix"],
        "count": count,
        "outcomes": dict(outcomes),
        "timed_out": timed_out,
        "unresolved": unresolved,
        "t0": t0,
        "stream_s": stream_end - t0,
        "stream_end": stream_end,
        "last_outcome": last_outcome,
        "end_to_last_outcome_s": last_outcome - stream_end if last_outcome else None,
        "finished_s": finished - t0,
        "outcome_wait_p50_s": percentile(waits, 50) if waits else None,
        "outcome_wait_max_s": waits[-1] if waits else None,
        "batcher": {
            "posts": bstats.posts,
            "polls": bstats.polls,
            "sealed_batches": bstats.sealed_batches,
            "accepted": bstats.accepted,
            "issued": bstats.issued,
            "failed": bstats.failed,
            "unknown": bstats.unknown,
            "retries": bstats.retries,
            "rate_limited": bstats.rate_limited,
        },
        "client": {
            "requests": cstats.requests,
            "posts": cstats.posts,
            "gets": cstats.gets,
            "rate_limited": cstats.rate_limited,
        },
        "limiter": {
            "granted": lstats.granted,
            "waited": lstats.waited,
            "wait_seconds": lstats.wait_seconds,
            "rate_limited": lstats.rate_limited,
        },
        "samples": samples,
    }


def main() -> None:
    spec = json.loads(sys.argv[1])
    result = asyncio.run(run(spec))
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
