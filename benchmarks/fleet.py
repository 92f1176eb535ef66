"""W5: a fleet of processes saturating one credential through ``RedisRateLimiter`` (issue #14).

``python -m benchmarks.fleet`` (or ``nox -s bench-fleet``). Per repetition it
starts a ``redis-server`` (:class:`thanx_async.testing.RedisServer`, empty,
on a free port of 127.0.0.1), the emulator in a process of its own
(:class:`benchmarks._emulator.EmulatorProcess`: fast jobs, 5 requests/s and a
long window scaled so that the sustained rate is 2 requests/s), and
``--processes`` client processes (``benchmarks._fleet_child``), each a
``ThanxClient`` on one shared ``RedisRateLimiter`` with a ``RewardBatcher``.
They are released together and each streams its share of ``--n`` distinct
identifiers at ``--rate / --processes`` per second, then waits for every
outcome.

Everything counted on the wire comes from the emulator process (its request
counters and each request's arrival, its ledger of rewards); the children
report their stream's end and last outcome on ``time.monotonic``, one clock
for every process on Linux. Results go to ``benchmarks/results/fleet.json``;
the verdicts are in ``docs/performance.md`` (W5), written by hand.

Options: ``--reps``, ``--processes``, ``--n``, ``--rate``, ``--per-window``,
``--window``, ``--max-wait``, ``--out``; ``--quick`` is a short dry run.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks._emulator import EmulatorProcess
from benchmarks._env import ROOT, environment
from benchmarks._fleet_child import identifiers
from benchmarks._run import wire
from thanx_async.testing import RedisServer

RESULTS = ROOT / "benchmarks" / "results" / "fleet.json"
#: Seconds from the go line to the common start: every child has read it by then.
START_MARGIN = 0.5
#: Issue #14's targets for this run.
MAX_END_TO_LAST_OUTCOME_S = 5.0
MIN_IDS_PER_POST = 200
MAX_POLLS_PER_JOB = 1.05
MIN_WINDOW_USE = 0.95


def allowed_in(span: float, per_second: int, per_window: int, window: float) -> int:
    """The most requests both sliding windows admit from a first request to ``span`` s later.

    The greedy schedule (each request as early as both windows allow) is the
    fastest one; this counts its requests at or before ``span``.
    """
    stamps: list[float] = []
    while True:
        k = len(stamps)
        at = 0.0
        if k >= per_second:
            at = max(at, stamps[k - per_second] + 1.0)
        if k >= per_window:
            at = max(at, stamps[k - per_window] + window)
        if at > span:
            return k
        stamps.append(at)


async def _ledger(base_url: str) -> list[dict[str, Any]]:
    """Every reward the emulator issued (read after the counters: these GETs count as requests)."""
    entries: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as session:
        while True:
            url = f"{base_url}/_emulator/ledger?offset={len(entries)}&limit=5000"
            async with session.get(url) as resp:
                page = await resp.json()
            entries += page["entries"]
            if not page["entries"] or len(entries) >= page["total"]:
                return entries


async def _children(
    emu: EmulatorProcess, redis_url: str, args: argparse.Namespace, rep: int
) -> list[dict[str, Any]]:
    """Start the fleet, release it at one instant, collect each child's RESULT."""
    share = args.n // args.processes
    procs = []
    for k in range(args.processes):
        spec = {
            "base_url": emu.url,
            "redis_url": redis_url,
            "prefix": f"r{rep}p{k}",
            "count": share + (args.n % args.processes if k == 0 else 0),
            "rate": args.rate / args.processes,
            "per_second": args.per_second,
            "per_window": args.per_window,
            "window": args.window,
            "batcher": {"max_wait": args.max_wait},
            "deadline": args.deadline,
            "sample": 0.5,
        }
        procs.append(
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "benchmarks._fleet_child",
                json.dumps(spec),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        )
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 60)
            if line.strip() != b"READY":
                raise RuntimeError(f"fleet child did not start: {line!r}")
        t0 = time.monotonic() + START_MARGIN
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(f"GO {t0}\n".encode())
            await proc.stdin.drain()
        budget = args.n / args.rate + args.deadline + 60
        outputs = await asyncio.wait_for(
            asyncio.gather(*(proc.communicate() for proc in procs)), budget
        )
    finally:
        for proc in procs:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
    results = []
    for proc, (out, err) in zip(procs, outputs, strict=True):
        lines = [ln for ln in out.decode().splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            tail = " | ".join(err.decode().strip().splitlines()[-3:])
            raise RuntimeError(f"fleet child failed (exit {proc.returncode}): {tail}")
        results.append(json.loads(lines[-1].removeprefix("RESULT ")))
    return results


async def one_run(args: argparse.Namespace, rep: int) -> dict[str, Any]:
    """One repetition: fresh Redis, fresh emulator, the fleet, then the measurements."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        server = RedisServer(Path(tmp))
        server.start()
        try:
            async with EmulatorProcess(
                speed=args.speed,
                start_delay=args.start_delay,
                per_second=args.per_second,
                per_window=args.per_window,
                window=args.window,
            ) as emu:
                children = await _children(emu, server.url, args, rep)
                stats = await emu.stats()
                ledger = await _ledger(emu.url)
        finally:
            server.stop()
    result = measure(args, rep, children, stats, ledger)
    result["wall_s"] = time.perf_counter() - started
    return result


def measure(
    args: argparse.Namespace,
    rep: int,
    children: list[dict[str, Any]],
    stats: dict[str, Any],
    ledger: list[dict[str, Any]],
) -> dict[str, Any]:
    """The W5 figures of one repetition."""
    counts = wire(stats)
    t0 = children[0]["t0"]
    arrivals = sorted(stats["arrivals"])
    admitted = [a for a in arrivals if a[2] != 429]
    posts = [a for a in admitted if a[1] == "P"]
    first, last = admitted[0][0], admitted[-1][0]
    last_post = posts[-1][0]
    limits = (args.per_second, args.per_window, args.window)
    busy = [a for a in admitted if a[0] <= last_post]
    allowed_busy = allowed_in(last_post - first, *limits)
    allowed_all = allowed_in(last - first, *limits)

    # Exactly once: every identifier of every child in the ledger, none twice.
    issued = collections.Counter(e["value"] for e in ledger)
    expected = {v for c in children for v in identifiers(c["prefix"], c["count"])}
    sizes = collections.Counter(e["job_id"] for e in ledger)
    created = {job: times[0] for job, times in stats["timings"].items()}
    jobs = sorted((created[job] - t0, size) for job, size in sizes.items())
    ends = [c["end_to_last_outcome_s"] for c in children]
    return {
        "rep": rep,
        "posts": counts["posts"],
        "accepted_posts": counts["accepted"],
        "gets": counts["gets"],
        "rate_limited_429": counts["rate_limited_429"],
        "admitted": len(admitted),
        "issued": sum(issued.values()),
        "ids_per_post": sum(sizes.values()) / max(1, len(sizes)),
        "post_size_min": min(sizes.values(), default=0),
        "post_size_median": statistics.median(sizes.values()) if sizes else 0,
        "post_size_max": max(sizes.values(), default=0),
        "polls_per_job": counts["gets"] / max(1, counts["accepted"]),
        "issued_per_request": sum(issued.values()) / max(1, len(admitted)),
        "busy_s": last_post - first,
        "busy_admitted": len(busy),
        "busy_allowed": allowed_busy,
        "window_use_busy": len(busy) / allowed_busy,
        "run_s": last - first,
        "run_allowed": allowed_all,
        "window_use_run": len(admitted) / allowed_all,
        "end_to_last_outcome_max_s": max(e if e is not None else math.inf for e in ends),
        "end_to_last_outcome_s": ends,
        "outcome_wait_p50_s": statistics.median(c["outcome_wait_p50_s"] for c in children),
        "outcome_wait_max_s": max(c["outcome_wait_max_s"] for c in children),
        "stream_s_max": max(c["stream_s"] for c in children),
        "missing": len(expected - set(issued)),
        "unexpected": len(set(issued) - expected),
        "issued_twice": sum(1 for n in issued.values() if n > 1),
        "outcomes": dict(
            sum((collections.Counter(c["outcomes"]) for c in children), start=collections.Counter())
        ),
        "timed_out": any(c["timed_out"] for c in children),
        "unresolved_at_deadline": sum(c["unresolved"] for c in children),
        # Evidence: every request (seconds from the start, method, status), every
        # job (its creation, its size), and what each process had pending when.
        "requests": [[round(a[0] - t0, 3), a[1], a[2]] for a in arrivals],
        "jobs": [[round(at, 3), size] for at, size in jobs],
        "children": children,
    }


ROWS: list[tuple[str, str, str]] = [
    # (key, label, format)
    ("posts", "POSTs", "{:.0f}"),
    ("gets", "GETs (polls)", "{:.0f}"),
    ("rate_limited_429", "429s", "{:.0f}"),
    ("admitted", "requests admitted", "{:.0f}"),
    ("ids_per_post", "identifiers per POST (mean)", "{:,.0f}"),
    ("post_size_min", "identifiers per POST (min)", "{:,.0f}"),
    ("post_size_max", "identifiers per POST (max)", "{:,.0f}"),
    ("polls_per_job", "polls per job", "{:.2f}"),
    ("issued_per_request", "identifiers issued per request", "{:,.1f}"),
    ("busy_s", "first request to last POST (s)", "{:.1f}"),
    ("window_use_busy", "budget used, first request to last POST", "{:.1%}"),
    ("window_use_run", "budget used, first to last request", "{:.1%}"),
    ("end_to_last_outcome_max_s", "stream end to last outcome, max (s)", "{:.2f}"),
    ("outcome_wait_p50_s", "submit to outcome p50 (s)", "{:.2f}"),
    ("outcome_wait_max_s", "submit to outcome max (s)", "{:.2f}"),
    ("unresolved_at_deadline", "unresolved at the deadline (then sent by aclose)", "{:,.0f}"),
    ("issued", "identifiers issued", "{:,.0f}"),
    ("issued_twice", "issued more than once", "{:.0f}"),
    ("missing", "never issued", "{:.0f}"),
    ("wall_s", "wall time of the run (s)", "{:.0f}"),
]


def medians(runs: list[dict[str, Any]]) -> dict[str, float]:
    return {key: statistics.median(float(r[key]) for r in runs) for key, _, _ in ROWS}


def table(runs: list[dict[str, Any]], med: dict[str, float]) -> str:
    head = "| | " + " | ".join(f"run {r['rep'] + 1}" for r in runs) + " | median |"
    lines = [head, "|---|" + "--:|" * (len(runs) + 1)]
    for key, label, fmt in ROWS:
        cells = [fmt.format(float(r[key])) for r in runs] + [fmt.format(med[key])]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdicts(runs: list[dict[str, Any]], med: dict[str, float]) -> list[tuple[str, str, bool]]:
    exact = all(r["issued_twice"] == 0 and r["missing"] == 0 for r in runs)
    return [
        (
            f"every identifier resolved within {MAX_END_TO_LAST_OUTCOME_S:g} s of the stream's end",
            f"{med['end_to_last_outcome_max_s']:.2f} s (median of the per-run max)",
            med["end_to_last_outcome_max_s"] <= MAX_END_TO_LAST_OUTCOME_S,
        ),
        (
            "hundreds of identifiers per POST",
            f"{med['ids_per_post']:,.0f} (smallest {min(r['post_size_min'] for r in runs):,})",
            med["ids_per_post"] >= MIN_IDS_PER_POST,
        ),
        (
            "zero 429s",
            f"{sum(r['rate_limited_429'] for r in runs)} in all runs",
            all(r["rate_limited_429"] == 0 for r in runs),
        ),
        (
            f"long window fully used (>= {MIN_WINDOW_USE:.0%} while POSTs wait)",
            f"{med['window_use_busy']:.1%}",
            med["window_use_busy"] >= MIN_WINDOW_USE,
        ),
        (
            f"polls per job <= {MAX_POLLS_PER_JOB}",
            f"{med['polls_per_job']:.2f}",
            med["polls_per_job"] <= MAX_POLLS_PER_JOB,
        ),
        ("every identifier issued exactly once", "yes" if exact else "NO", exact),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fleet")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--n", type=int, default=24_000, help="identifiers, fleet-wide")
    parser.add_argument("--rate", type=float, default=800.0, help="identifiers/s, fleet-wide")
    parser.add_argument("--per-second", type=int, default=5)
    parser.add_argument("--per-window", type=int, default=40)
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--speed", type=float, default=20_000.0)
    parser.add_argument("--start-delay", type=float, default=0.2)
    parser.add_argument("--max-wait", type=float, default=0.05)
    parser.add_argument(
        "--deadline", type=float, default=120.0, help="seconds to wait for outcomes after a stream"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--quick", action="store_true", help="one short run (a dry run)")
    args = parser.parse_args(argv)
    if args.quick:
        args.reps, args.n = 1, 4_000
    started = time.perf_counter()
    runs = []
    for rep in range(args.reps):
        run = asyncio.run(one_run(args, rep))
        runs.append(run)
        print(
            f"run {rep + 1}/{args.reps}: {run['posts']} POST, {run['gets']} GET, "
            f"{run['rate_limited_429']} x 429, {run['ids_per_post']:,.0f} ids/POST, "
            f"{run['polls_per_job']:.2f} polls/job, budget {run['window_use_busy']:.1%}, "
            f"last outcome {run['end_to_last_outcome_max_s']:.2f} s after the stream "
            f"({run['wall_s']:.0f} s)",
            flush=True,
        )
    med = medians(runs)
    print()
    print(table(runs, med))
    print()
    checks = verdicts(runs, med)
    for target, measured, ok in checks:
        print(f"{'met   ' if ok else 'MISSED'}  {target}: {measured}")
    settings = {k: v for k, v in vars(args).items() if k not in {"out", "quick"}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "env": environment(),
                "settings": settings,
                "total_s": time.perf_counter() - started,
                "medians": med,
                "verdicts": [{"target": t, "measured": m, "met": ok} for t, m, ok in checks],
                "runs": runs,
            },
            indent=1,
        )
        + "\n"
    )
    print(f"\nwrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 0 if all(ok for _, _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
