"""One measured run, in a fresh process: ``python -m benchmarks._run '<json spec>'``.

The run starts its own emulator process, drives one contender through one
workload, reads the emulator's wire counters and prints one JSON line of
results. A fresh process per run keeps runs from sharing heaps, caches or
sockets; the emulator being another process keeps its CPU out of the client's.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import json
import os
import random
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from benchmarks._contenders import DEFAULTS, Contender, make_contender
from benchmarks._emulator import EmulatorProcess
from benchmarks._measure import LagTicker, Recorder
from benchmarks._webhooks import WebhookSite
from benchmarks.baselines import raw
from thanx_async.testing import AOF_ALWAYS, RedisServer

#: Emulator defaults: Thanx's limits, and jobs of the emulator's default pace.
EMULATOR_DEFAULTS: dict[str, Any] = {
    "speed": 20_000.0,
    "start_delay": 0.2,
    "per_second": 5,
    "per_window": 2000,
    "window": 900.0,
    "timespec": "seconds",
}


def identifiers(n: int) -> list[str]:
    """Distinct identifiers: 80% emails, 20% E.164 phones; about 1% are unknown users."""
    out = []
    for i in range(n):
        if i % 5 == 0:
            out.append(f"+1{2_000_000_000 + i}")  # ends in 0000 every 10,000: not found
        elif i % 97 == 0:
            out.append(f"unknown{i}@example.com")  # the emulator's "User not found"
        else:
            out.append(f"user{i}@example.com")
    return out


def partitions_for(n: int, count: int, seed: int) -> list[int | None]:
    if count <= 1:
        return [None] * n
    rng = random.Random(seed)
    return [rng.randrange(count) for _ in range(n)]


def wire(stats: dict[str, Any]) -> dict[str, Any]:
    by_status: dict[str, int] = stats["by_status"]
    posts = sum(v for k, v in by_status.items() if k.startswith("POST"))
    gets = sum(v for k, v in by_status.items() if k.startswith("GET"))
    return {
        "posts": posts,
        "gets": gets,
        "accepted": by_status.get("POST 202", 0),
        "rate_limited_429": sum(v for k, v in by_status.items() if k.endswith(" 429")),
        "by_status": by_status,
        "server_jobs": stats["jobs"],
    }


async def _produce_burst(
    contender: Contender, idents: list[str], parts: list[int | None], page: int, rec: Recorder
) -> None:
    submit, clock, at, done = contender.submit, time.perf_counter, rec.submitted_at, rec.done
    partial = functools.partial
    for i, identifier in enumerate(idents):
        at[i] = clock()
        future = await submit(identifier, parts[i])
        future.add_done_callback(partial(done, i))
        if i % page == page - 1:
            await asyncio.sleep(0)  # the producer hands over one page per loop turn


async def _produce_burst_concurrent(
    contender: Contender, idents: list[str], parts: list[int | None], page: int, rec: Recorder
) -> None:
    """Each page is submitted by concurrent ``submit`` calls (one task each), then awaited.

    What a caller does when ``submit`` itself waits (a journal's durable
    acknowledgement): the page's submissions share one group commit.
    """
    submit, clock, at, done = contender.submit, time.perf_counter, rec.submitted_at, rec.done
    partial = functools.partial
    for start in range(0, len(idents), page):
        stop = min(start + page, len(idents))
        now = clock()
        for i in range(start, stop):
            at[i] = now
        futures = await asyncio.gather(*(submit(idents[i], parts[i]) for i in range(start, stop)))
        for i, future in zip(range(start, stop), futures, strict=True):
            future.add_done_callback(partial(done, i))


async def _produce_trickle(
    contender: Contender, idents: list[str], parts: list[int | None], rate: float, rec: Recorder
) -> None:
    submit, clock, at, done = contender.submit, time.perf_counter, rec.submitted_at, rec.done
    partial = functools.partial
    n, i = len(idents), 0
    start = clock()
    while i < n:
        due = min(n, int((clock() - start) * rate) + 1)
        while i < due:
            at[i] = clock()
            future = await submit(idents[i], parts[i])
            future.add_done_callback(partial(done, i))
            i += 1
        await asyncio.sleep(0.001)


async def run_flow(  # noqa: PLR0912, PLR0915 - one run, top to bottom, reads best in one piece
    spec: dict[str, Any], emulator: EmulatorProcess, site: WebhookSite | None = None
) -> dict[str, Any]:
    """Burst, trickle or saturate: submit, wait for the outcomes (or the time box), measure."""
    n = spec["n"]
    idents = identifiers(n)
    parts = partitions_for(n, spec.get("partitions", 1), spec.get("seed", 1))
    rec = Recorder(n)
    tmp = None
    redis_server = None
    if spec.get("journal"):
        tmp = tempfile.mkdtemp(prefix="bench-journal-")
        if spec["journal"] == "redis":
            redis_server = _start_redis(Path(tmp), spec.get("redis_args", AOF_ALWAYS))
            spec = spec | {"journal": _redis_journal(redis_server.url)}
        else:
            spec = spec | {"journal": str(Path(tmp) / "journal.db")}
    contender = make_contender(spec["contender"], emulator.url, spec)
    if site is not None:
        site.attach(contender)
    if not spec.get("gc_off"):
        gc.collect()
    ticker = LagTicker()
    ticker.start()
    await asyncio.sleep(0.01)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    mono0 = time.monotonic()
    perf_to_mono = mono0 - time.perf_counter()
    if spec["workload"] == "trickle":
        await _produce_trickle(contender, idents, parts, spec["rate"], rec)
    elif spec.get("concurrent"):
        await _produce_burst_concurrent(contender, idents, parts, spec.get("page", 100), rec)
    else:
        await _produce_burst(contender, idents, parts, spec.get("page", 100), rec)
    submitted_in = time.perf_counter() - wall0
    finishing = asyncio.get_running_loop().create_task(contender.finish())
    box = spec.get("box")
    limit = box - (time.perf_counter() - wall0) if box else spec.get("deadline", 120.0)
    timed_out = False
    try:
        await asyncio.wait_for(rec.all_done.wait(), max(0.0, limit))
    except TimeoutError:
        timed_out = True
    end = time.perf_counter() if (box or timed_out) else rec.last_at
    cpu = time.process_time() - cpu0
    await ticker.stop()
    elapsed = end - wall0
    stats = await emulator.stats() if emulator.url else {}
    result: dict[str, Any] = {
        "n": n,
        "elapsed_s": elapsed,
        "submit_s": submitted_in,
        "timed_out": timed_out and not box,
        "cpu_s": cpu,
        **rec.summary(stats.get("timings"), perf_to_mono),
        **ticker.summary(),
        **contender.extra(),
    }
    result["ids_per_s"] = result["ok"] / elapsed if elapsed > 0 else 0.0
    result["cpu_per_100k_s"] = cpu / max(1, rec.resolved if (box or timed_out) else n) * 100_000
    result |= site.extra(stats) if site is not None else {}
    if stats:
        result |= wire(stats)
        if box:
            result |= _box_counts(stats["arrivals"], mono0, box)
    if timed_out and not box and not spec.get("expect_timeout"):
        result["error"] = (
            f"{n - rec.resolved:,} of {n:,} futures still unresolved {limit:g} s after "
            "the last submission"
        )
    if not finishing.done():
        finishing.cancel()
    try:
        await asyncio.wait_for(contender.aclose(), 2.0)
    except (TimeoutError, Exception) as exc:  # noqa: BLE001 - boxed runs leave work behind
        result["close"] = type(exc).__name__
    if redis_server is not None:
        result |= await _redis_info(redis_server.url)
        redis_server.stop()
    if tmp is not None:
        result["journal_bytes"] = await asyncio.to_thread(_size_of, Path(tmp))
    return result


def _start_redis(folder: Path, args: Any) -> RedisServer:
    """A redis-server of the run's own (AOF fsynced per write unless ``redis_args`` say else)."""
    server = RedisServer(folder, extra_args=list(args))
    server.start()
    return server


def _redis_journal(url: str) -> Any:
    # Imported here: redis-py is in the `redis` extra, which only this entrant needs.
    from thanx_async.redis import RedisJournal  # noqa: PLC0415

    return RedisJournal(url, name="bench")


async def _redis_info(url: str) -> dict[str, Any]:
    """Redis's memory (its data while results are kept) and CPU at the end of the run."""
    import redis.asyncio  # noqa: PLC0415 - see _redis_journal

    client = redis.asyncio.Redis.from_url(url)
    try:
        memory, cpu = await client.info("memory"), await client.info("cpu")
        scripts = await client.info("commandstats")
    finally:
        await client.aclose()
    return {
        "redis_used_memory": int(memory["used_memory"]),
        "redis_cpu_s": float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]),
        "redis_script_s": scripts.get("cmdstat_evalsha", {}).get("usec", 0) / 1e6,
    }


def _size_of(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _box_counts(arrivals: list[list[Any]], mono0: float, box: float) -> dict[str, Any]:
    """Requests the server admitted in ``box`` seconds from the first request's arrival."""
    if not arrivals:
        return {"box_requests": 0}
    first = min(a[0] for a in arrivals)
    inside = [a for a in arrivals if first <= a[0] < first + box]
    return {
        "box_s": box,
        "box_start_after_submit_s": first - mono0,
        "box_requests": sum(1 for a in inside if a[2] != 429),
        "box_posts": sum(1 for a in inside if a[1] == "P" and a[2] != 429),
        "box_gets": sum(1 for a in inside if a[1] == "G" and a[2] != 429),
        "box_429": sum(1 for a in inside if a[2] == 429),
    }


async def run_raw(spec: dict[str, Any], emulator: EmulatorProcess) -> dict[str, Any]:
    """(d) the wire floor: POST pre-serialised full bodies, nothing else."""
    n = spec["n"]
    bodies = raw.serialise(identifiers(n), **DEFAULTS, size=spec.get("max_batch_size", 10_000))
    gc.collect()
    ticker = LagTicker()
    ticker.start()
    await asyncio.sleep(0.01)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    statuses = await raw.post_all(emulator.url, bodies, concurrency=spec.get("concurrency", 4))
    elapsed = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    await ticker.stop()
    ok = sum(1 for s in statuses if s == 202) * spec.get("max_batch_size", 10_000)
    return {
        "n": n,
        "elapsed_s": elapsed,
        "cpu_s": cpu,
        "ok": min(ok, n),
        "ids_per_s": min(ok, n) / elapsed,
        "cpu_per_100k_s": cpu / n * 100_000,
        **ticker.summary(),
        **wire(await emulator.stats()),
    }


async def run_memory(spec: dict[str, Any], emulator: EmulatorProcess) -> dict[str, Any]:
    """Bytes per pending identifier: tracemalloc with ``n`` identifiers unresolved.

    The emulator's jobs never start (an hour's start delay), so every batch is
    sealed, POSTed and accepted, and its job followed, while all ``n`` futures
    stay pending: the steady state of a batcher waiting on slow jobs. The input
    strings and the caller's list of futures exist before the baseline is
    taken; everything the contender allocates after it is counted.
    """
    n = spec["n"]
    idents = identifiers(n)
    futures: list[Any] = [None] * n
    gc.collect()
    tracked_before = len(gc.get_objects())
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    contender = make_contender(spec["contender"], emulator.url, spec)
    for i, identifier in enumerate(idents):
        futures[i] = await contender.submit(identifier, None)
        if i % 100 == 99:
            await asyncio.sleep(0)
    finishing = asyncio.get_running_loop().create_task(contender.finish())
    expected = -(-n // spec.get("max_batch_size", 10_000))
    for _ in range(600):  # until the server has accepted every batch
        await asyncio.sleep(0.1)
        stats = await emulator.stats()
        if stats["jobs"] >= expected and (finishing.done() or spec["contender"] != "sdk"):
            break
    await asyncio.sleep(0.5)  # let the first polls happen: the tracker's state is counted too
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    snapshot = tracemalloc.take_snapshot()
    tracemalloc.stop()
    tracked = len(gc.get_objects()) - tracked_before
    pending = sum(1 for f in futures if not f.done())
    finishing.cancel()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(contender.aclose(), 2.0)
    top = [
        {"where": str(stat.traceback), "bytes": stat.size, "count": stat.count}
        for stat in snapshot.statistics("lineno")[:8]
    ]
    return {
        "n": n,
        "pending": pending,
        "bytes_total": after - before,
        "bytes_per_pending": (after - before) / max(1, pending),
        # Objects CPython's cyclic GC must traverse on every full collection, per identifier.
        "gc_objects_per_pending": tracked / max(1, pending),
        "top": top,
        **wire(await emulator.stats()),
    }


async def main_async(spec: dict[str, Any]) -> dict[str, Any]:
    options = EMULATOR_DEFAULTS | spec.get("emulator", {})
    if spec["contender"] == "null":
        emulator = EmulatorProcess(**options)
        return await run_flow(spec, emulator)  # no emulator process: nothing goes on the wire
    site = None
    if spec.get("webhooks"):
        # The client's endpoint first: the emulator is told where to deliver.
        site = WebhookSite()
        await site.start()
        options |= {"webhooks": site.emulator_options(spec["webhooks"])}
    try:
        async with EmulatorProcess(**options) as emulator:
            if spec["workload"] == "raw":
                return await run_raw(spec, emulator)
            if spec["workload"] == "memory":
                return await run_memory(spec, emulator)
            return await run_flow(spec, emulator, site)
    finally:
        if site is not None:
            await site.aclose()


def main() -> None:
    spec = json.loads(sys.argv[1])
    if spec.get("gc_off"):
        gc.disable()  # diagnostic runs only: what the code costs without CPython's cyclic GC
    try:
        result = asyncio.run(main_async(spec))
    except Exception as exc:  # noqa: BLE001 - reported; the suite records it and goes on
        result = {"error": f"{type(exc).__name__}: {exc}"}
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    # A time-boxed run leaves requests behind on purpose; do not wait for them.
    os._exit(0)


if __name__ == "__main__":
    main()
