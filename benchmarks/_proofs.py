"""Measurements behind the targets that no client can meet, and behind the hot spots.

``python -m benchmarks._proofs`` prints one JSON line:

* ``gc_full_ms``: one full collection of CPython's cyclic GC with 100,000
  pending futures (the contract's minimum: one future per pending identifier)
  alone, and with one small record each. CPython runs such a collection by
  itself while objects accumulate; the loop is blocked for all of it.
* ``fsync_ms`` and ``sqlite_full_commits_per_s``: how many durable commits per
  second the disk allows; a caller that awaits each journaled ``submit`` in
  turn gets at most one identifier per commit.
* ``orjson_small_bytes``: what tracemalloc charges for one small
  ``orjson.dumps`` result kept alive (the per-identifier pre-encoding).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import tracemalloc
from typing import Any

import orjson


def _full_gc_ms(repeat: int = 5) -> float:
    timings = []
    for _ in range(repeat):
        start = time.perf_counter()
        gc.collect()
        timings.append(time.perf_counter() - start)
    return min(timings) * 1000


async def _gc_floor(n: int) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    gc.collect()
    empty = _full_gc_ms()
    futures = [loop.create_future() for _ in range(n)]
    only_futures = _full_gc_ms()
    records = [[i, f] for i, f in enumerate(futures)]
    with_records = _full_gc_ms()
    del records, futures
    return {
        "gc_full_ms_empty": empty,
        "gc_full_ms_futures": only_futures,
        "gc_full_ms_futures_and_records": with_records,
        "gc_pending": n,
    }


def _orjson_small() -> dict[str, Any]:
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = [orjson.dumps({"type": "email", "value": f"user{i}@example.com"}) for i in range(1000)]
    per = (tracemalloc.get_traced_memory()[0] - before) / len(kept)
    tracemalloc.stop()
    return {"orjson_small_bytes": per, "orjson_small_len": len(kept[0])}


def _durable_commits(n: int = 500) -> dict[str, Any]:
    """fsync latency and one-row SQLite commits per second on this machine's disk (tmp dir)."""
    with tempfile.TemporaryDirectory(prefix="bench-fsync-") as tmp:
        fd = os.open(os.path.join(tmp, "f"), os.O_WRONLY | os.O_CREAT)
        timings = []
        for _ in range(n):
            os.write(fd, b"x" * 100)
            start = time.perf_counter()
            os.fsync(fd)
            timings.append(time.perf_counter() - start)
        os.close(fd)
        conn = sqlite3.connect(os.path.join(tmp, "j.db"), isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        start = time.perf_counter()
        for i in range(n):
            conn.execute("BEGIN")
            conn.execute("INSERT INTO t (v) VALUES (?)", (f"user{i}@example.com",))
            conn.execute("COMMIT")
        commits = n / (time.perf_counter() - start)
        conn.close()
    return {"fsync_ms": statistics.median(timings) * 1000, "sqlite_full_commits_per_s": commits}


def main() -> None:
    result = asyncio.run(_gc_floor(100_000)) | _orjson_small() | _durable_commits()
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
