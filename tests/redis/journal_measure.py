"""Measure RedisJournal: memory per recorded result, and throughput (run by hand, not a test).

``python -m tests.redis.journal_measure`` starts its own redis-server on
127.0.0.1 (no persistence, or ``--aof`` for ``appendfsync always``), then:

* finishes (and reports) 10,000 identifiers in 1 batch, and 10,000 in 100
  batches of 100,
  and sums ``MEMORY USAGE`` over the ledger's keys (the replies kept a minute
  for retries, ``r:``, apart) and the growth of ``used_memory``;
* times admit_many / seal / finished + reported of those (one call each);
* times admissions as a batcher sends them: many in one loop turn, and one
  awaited alone (the latency ``await submit()`` adds).

The figures go to docs/guides/many-processes.md ("Memory in Redis").
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

import redis.asyncio

from tests.redis_support import AOF_ALWAYS, RedisServer
from thanx_async.redis import RedisJournal

PART = (str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4()))


async def key_memory(admin: redis.asyncio.Redis, name: str) -> tuple[int, int, int]:
    """(bytes of the ledger's lasting keys, their count, bytes of the kept replies)."""
    lasting = count = replies = 0
    async for key in admin.scan_iter(match=f"thanx_async:journal:{{{name}}}:*", count=1000):
        size = await admin.memory_usage(key, samples=0) or 0
        if b":r:" in key:
            replies += size
        else:
            lasting += size
            count += 1
    return lasting, count, replies


async def memory(url: str, batches: int, per: int) -> None:
    name = f"m-{uuid.uuid4().hex[:8]}"
    journal = RedisJournal(url, name=name)
    await journal.open()
    admin = redis.asyncio.Redis.from_url(url)
    before = (await admin.info("memory"))["used_memory"]
    times = [0.0, 0.0, 0.0]
    for b in range(batches):
        items = [(PART, "email", f"user{b}-{i}@example.com", None) for i in range(per)]
        started = time.perf_counter()
        ids = [i for i in await journal.admit_many(items) if isinstance(i, int)]
        times[0] += time.perf_counter() - started
        started = time.perf_counter()
        batch = await journal.seal(PART, str(uuid.uuid4()), b"x" * (per * 40), ids)
        times[1] += time.perf_counter() - started
        job = (
            b'{"id":"%s","state":"completed","summary":{"total":%d,"success_count":%d,'
            b'"failure_count":0,"failures":[]}}' % (str(uuid.uuid4()).encode(), per, per)
        )
        started = time.perf_counter()
        await journal.finished(batch, job)
        await journal.reported(batch)
        times[2] += time.perf_counter() - started
    lasting, count, replies = await key_memory(admin, name)
    grown = (await admin.info("memory"))["used_memory"] - before
    n = batches * per
    print(  # noqa: T201 - a script's output
        f"{n:,} results in {batches} x {per}: {count:,} keys, MEMORY USAGE {lasting / n:.0f} B"
        f" per result (+{replies / n:.0f} B of replies kept a minute), used_memory"
        f" +{grown / n:.0f} B per result; admit {n / times[0]:,.0f}/s, seal {n / times[1]:,.0f}/s,"
        f" finished+reported {n / times[2]:,.0f}/s (identifiers, one call each)"
    )
    await journal.aclose()
    await admin.aclose()


async def admissions(url: str) -> None:
    journal = RedisJournal(url, name=f"a-{uuid.uuid4().hex[:8]}")
    await journal.open()
    for group, calls in ((100, 100), (1, 2000)):
        started = time.perf_counter()
        await asyncio.gather(
            *(
                journal.admit_many([(PART, "email", f"g{group}-{c}-{i}@x.com", None)
                                    for i in range(group)])
                for c in range(calls)
            )
        )  # fmt: skip
        elapsed = time.perf_counter() - started
        print(  # noqa: T201
            f"{calls} admissions of {group} asked in one loop turn: {calls * group / elapsed:,.0f}"
            f" identifiers/s ({elapsed * 1000:.0f} ms)"
        )
    latencies = []
    for c in range(1000):
        started = time.perf_counter()
        await journal.admit_many([(PART, "email", f"alone{c}@x.com", None)])
        latencies.append(time.perf_counter() - started)
    latencies.sort()
    print(  # noqa: T201
        f"one admission awaited alone: p50 {latencies[500] * 1000:.2f} ms,"
        f" p99 {latencies[990] * 1000:.2f} ms"
    )
    await journal.aclose()


async def main(url: str) -> None:
    await memory(url, 1, 10_000)
    await memory(url, 100, 100)
    await admissions(url)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--aof", action="store_true", help="appendonly yes, appendfsync always")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        server = RedisServer(Path(directory), extra_args=AOF_ALWAYS if options.aof else ())
        server.start()
        try:
            asyncio.run(main(server.url))
        finally:
            server.stop()
