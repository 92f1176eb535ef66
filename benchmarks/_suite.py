"""The benchmark suite: which runs, in what order, and what they add up to.

Every experiment alternates its contenders within each repetition (rotating
the order each time), so slow drifts of a noisy machine hit all of them
alike; results are medians over repetitions and ratios are medians of the
per-repetition ratios.
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from benchmarks._contenders import journal_supported

# -- emulator settings --------------------------------------------------------

#: A 10,000-identifier job lasts 0.2 + 0.5 = 0.7 s ("fast jobs", the emulator's default pace).
FAST_JOBS = {"speed": 20_000.0, "start_delay": 0.2}
#: A 10,000-identifier job lasts 0.5 + 4.0 = 4.5 s (in the 2-10 s band of the polling target).
SLOW_JOBS = {"speed": 2_500.0, "start_delay": 0.5}
#: W2's batches: 2,000 identifiers last 2.3 s, 10,000 last 9.6 s (both in the 2-10 s band).
TRICKLE_JOBS = {"speed": 1_100.0, "start_delay": 0.5}
#: Thanx's limits.
THANX_LIMITS = {"per_second": 5, "per_window": 2000, "window": 900.0}
#: The short window raised tenfold so that W1/W3 measure the client, not the budget.
RAISED_LIMITS = {"per_second": 50, "per_window": 2000, "window": 900.0}
#: W4: Thanx's ratio (2,000 per 900 s = 2.22/s) on a 20 s window, plus the real 5/s.
W4_LIMITS = {"per_second": 5, "per_window": 44, "window": 20.0}
W4_BOX = 60.0
#: ``max_pending`` that never binds (W1-floor's runs without back-pressure).
UNBOUNDED = 1_000_000_000
#: The webhook Thanx sends once per job, the one that finishes a batch without polling.
COMPLETED = "reward_batch.completed"
#: Both webhooks: also one ``reward.issued`` per reward (10,000 per full job).
EVERY_EVENT = "reward_batch.completed,reward.issued"
#: Job timestamps finer than the whole seconds the API documents (the emulator's default).
MS_STAMPS = {"timespec": "milliseconds"}


WEBHOOKS_NOTE = (
    "*+webhooks*: the emulator posts each job's `reward_batch.completed`, signed, to a "
    "`WebhookReceiver` served by aiohttp in the client process, which hands it to the "
    "batcher (and so polls each job only after its predicted end plus a 2 s grace)"
)


def _spec(workload: str, n: int, emulator: dict[str, Any], **extra: Any) -> dict[str, Any]:
    limits = {k: emulator[k] for k in ("per_second", "per_window", "window")}
    return {
        "workload": workload,
        "n": n,
        "emulator": emulator,
        "client_rate_limit": limits,
        **extra,
    }


@dataclass
class Entrant:
    label: str
    contender: str
    overrides: dict[str, Any] = field(default_factory=dict)
    reps: int | None = None  # None: the experiment's


@dataclass
class Experiment:
    key: str
    title: str
    base: dict[str, Any]
    entrants: list[Entrant]
    reps: int
    note: str = ""
    enabled: bool = True
    disabled_reason: str = ""


def experiments(scale: float = 1.0, reps: int | None = None) -> list[Experiment]:
    """The full plan; ``scale`` shrinks identifier counts and ``reps`` caps repetitions."""

    def n(count: int) -> int:
        return max(1000, int(count * scale))

    def r(count: int) -> int:
        return count if reps is None else max(1, min(count, reps))

    fast = FAST_JOBS | RAISED_LIMITS
    journal = journal_supported()
    return [
        Experiment(
            "W1",
            "Burst: 200,000 identifiers as fast as possible, one partition, fast jobs",
            _spec("burst", n(200_000), fast, page=100),
            [
                Entrant("sdk", "sdk"),
                Entrant("handrolled", "handrolled"),
                Entrant("dataloader", "dataloader", {"page": 10_000}),
                Entrant("raw", "raw", {"workload": "raw"}),
            ],
            r(5),
        ),
        Experiment(
            "W1-ms",
            "Burst as W1, with millisecond job timestamps instead of whole seconds",
            _spec("burst", n(200_000), fast | MS_STAMPS, page=100),
            [Entrant("sdk", "sdk"), Entrant("handrolled", "handrolled")],
            r(5),
        ),
        Experiment(
            "W1-gcoff",
            "Burst as W1 with CPython's cyclic GC switched off (diagnostic)",
            _spec("burst", n(200_000), fast, page=100, gc_off=True),
            [Entrant("sdk", "sdk"), Entrant("handrolled", "handrolled")],
            r(3),
        ),
        Experiment(
            "W1-floor",
            "Burst as W1 against the contract floor (is the W1 target reachable at all?)",
            _spec("burst", n(200_000), fast, page=100),
            [
                Entrant("sdk", "sdk"),
                Entrant("handrolled", "handrolled"),
                Entrant("floor", "floor"),
                Entrant("floor-deferred", "floor-deferred"),
                # Not the contract: what DESIGN's back-pressure default costs in W1.
                Entrant("floor no back-pressure", "floor", {"max_pending": UNBOUNDED}),
                Entrant("sdk no back-pressure", "sdk", {"sdk_options": {"max_pending": UNBOUNDED}}),
            ],
            r(5),
        ),
        Experiment(
            "W1-naive",
            "Burst, naive baseline (a) on a sample",
            _spec("burst", 300, fast, page=100),
            [Entrant("naive", "naive")],
            1,
        ),
        Experiment(
            "W1-dl100",
            "Burst, DataLoader (b) fed 100 identifiers per loop turn (time-boxed)",
            _spec("burst", n(200_000), fast, page=100, deadline=30.0, expect_timeout=True),
            [Entrant("dataloader", "dataloader")],
            1,
        ),
        Experiment(
            "W1-slow",
            "Burst, jobs lasting 4.5 s (polling)",
            _spec("burst", n(200_000), SLOW_JOBS | RAISED_LIMITS, page=100),
            [
                Entrant("sdk", "sdk"),
                Entrant("handrolled", "handrolled"),
                Entrant("dataloader", "dataloader", {"page": 10_000}),
            ],
            r(3),
        ),
        Experiment(
            "W1-slow-ms",
            "Burst as W1-slow, with millisecond job timestamps instead of whole seconds",
            _spec("burst", n(200_000), SLOW_JOBS | RAISED_LIMITS | MS_STAMPS, page=100),
            [Entrant("sdk", "sdk"), Entrant("handrolled", "handrolled")],
            r(3),
        ),
        Experiment(
            "W1-journal",
            "Burst, fast jobs: journal on vs off (50,000 identifiers)",
            _spec("burst", n(50_000), fast, page=100),
            [
                Entrant("sdk", "sdk"),
                Entrant("sdk+journal", "sdk", {"journal": True}),
                Entrant("sdk concurrent", "sdk", {"concurrent": True}),
                Entrant("sdk+journal concurrent", "sdk", {"journal": True, "concurrent": True}),
                Entrant("sdk+redis", "sdk", {"journal": "redis"}),
                Entrant("sdk+redis concurrent", "sdk", {"journal": "redis", "concurrent": True}),
            ],
            r(3),
            note="sequential: one `await submit()` after the other; concurrent: the 100 "
            "submissions of a page run as concurrent tasks and are awaited together; "
            "*journal*: the SQLite `Journal` (synchronous=FULL) on this machine's disk; "
            "*Redis journal*: `RedisJournal` on a redis-server of the run's own on 127.0.0.1 "
            "with `appendonly yes`, `appendfsync always` (every acknowledged write fsynced)",
            enabled=journal,
            disabled_reason="RewardBatcher does not accept journal= in this build",
        ),
        Experiment(
            "W2",
            "Trickle: 2,000 identifiers per second for 15 s, jobs of 2-10 s, Thanx limits",
            _spec("trickle", n(30_000), TRICKLE_JOBS | THANX_LIMITS, rate=2000.0),
            [
                Entrant("sdk", "sdk", {"max_wait": 1.0}),
                Entrant("sdk max_wait=6", "sdk", {"max_wait": 6.0}),
                Entrant("handrolled", "handrolled", {"max_wait": 1.0}),
                Entrant(
                    "dataloader", "dataloader", {"deadline": 15.0, "expect_timeout": True}, reps=1
                ),
            ],
            r(3),
        ),
        Experiment(
            "W1-webhooks",
            "Burst as W1, with and without the emulator's webhooks",
            _spec("burst", n(200_000), fast, page=100),
            [
                Entrant("sdk", "sdk"),
                Entrant("sdk+webhooks", "sdk", {"webhooks": COMPLETED}),
            ],
            r(3),
            note=WEBHOOKS_NOTE,
        ),
        Experiment(
            "W2-webhooks",
            "Trickle as W2, with and without the emulator's webhooks",
            _spec("trickle", n(30_000), TRICKLE_JOBS | THANX_LIMITS, rate=2000.0, max_wait=1.0),
            [
                Entrant("sdk", "sdk"),
                Entrant("sdk+webhooks", "sdk", {"webhooks": COMPLETED}),
                Entrant("sdk+webhooks every event", "sdk", {"webhooks": EVERY_EVENT}),
            ],
            r(3),
            note=WEBHOOKS_NOTE + "; *every event*: also one `reward.issued` per reward",
        ),
        Experiment(
            "W3",
            "Mixed: 200,000 identifiers over 20 partitions, interleaved, fast jobs",
            _spec("burst", n(200_000), fast, page=100, partitions=20),
            [
                Entrant("sdk", "sdk"),
                Entrant("handrolled", "handrolled"),
                Entrant("dataloader", "dataloader", {"page": 10_000}),
            ],
            r(3),
        ),
        Experiment(
            "W4",
            "Saturating: rate limits scaled to a 20 s window, batches of 100",
            _spec(
                "burst",
                20_000,
                FAST_JOBS | W4_LIMITS,
                page=100,
                max_batch_size=100,
                box=W4_BOX * min(1.0, scale * 4),
                sdk_options={"close_timeout": 1.0},
            ),
            [Entrant("sdk", "sdk"), Entrant("handrolled", "handrolled", reps=1)],
            r(2),
        ),
        Experiment(
            "MEM",
            "Memory: 100,000 identifiers pending (tracemalloc)",
            _spec("memory", 100_000, {"start_delay": 3600.0, "speed": 1.0} | RAISED_LIMITS),
            [
                Entrant("sdk", "sdk"),
                Entrant("handrolled", "handrolled"),
                Entrant("dataloader", "dataloader"),
            ],
            1,
        ),
        Experiment(
            "FLOOR",
            "Harness floor: futures resolved at once, no network",
            _spec("burst", n(200_000), fast, page=100),
            [Entrant("null", "null")],
            1,
        ),
    ]


# -- running ------------------------------------------------------------------


def run_one(spec: dict[str, Any], timeout: float = 900.0) -> dict[str, Any]:
    """One run in a fresh process; returns its result (``{"error": ...}`` on failure)."""
    started = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks._run", json.dumps(spec)],
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:g}s", "wall_s": timeout}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        tail = proc.stderr.strip().splitlines()[-3:]
        return {"error": f"no result (exit {proc.returncode}): {' | '.join(tail)}"}
    result: dict[str, Any] = json.loads(lines[-1])
    result["wall_s"] = time.perf_counter() - started
    return result


def run_experiment(
    exp: Experiment, log: Callable[[str], None] = print
) -> dict[str, list[dict[str, Any]]]:
    """Every repetition of every entrant, alternating; results per entrant label."""
    results: dict[str, list[dict[str, Any]]] = {e.label: [] for e in exp.entrants}
    for rep in range(exp.reps):
        order = exp.entrants[rep % len(exp.entrants) :] + exp.entrants[: rep % len(exp.entrants)]
        for entrant in order:
            if entrant.reps is not None and rep >= entrant.reps:
                continue
            spec = exp.base | {"contender": entrant.contender} | entrant.overrides
            result = run_one(spec)
            result["rep"] = rep
            results[entrant.label].append(result)
            log(f"  {exp.key:<10} rep {rep + 1}/{exp.reps} {entrant.label:<16} {brief(result)}")
    return results


def brief(result: dict[str, Any]) -> str:
    if "error" in result:
        return f"ERROR {result['error']}"
    parts = [f"{result.get('wall_s', 0):5.1f}s"]
    if "ids_per_s" in result:
        parts.append(f"{result['ids_per_s']:>9,.0f} id/s")
    if "cpu_per_100k_s" in result:
        parts.append(f"cpu {result['cpu_per_100k_s']:.2f}s/100k")
    if "posts" in result:
        parts.append(
            f"POST {result['posts']} GET {result['gets']} 429 {result['rate_limited_429']}"
        )
    if "late_max_ms" in result and not math.isnan(result["late_max_ms"]):
        parts.append(f"late max {result['late_max_ms']:.0f}ms")
    if "lag_max_ms" in result:
        parts.append(f"lag {result['lag_max_ms']:.0f}ms")
    if "bytes_per_pending" in result:
        parts.append(f"{result['bytes_per_pending']:,.0f} B/pending")
    if "box_requests" in result:
        parts.append(f"box {result['box_requests']} req")
    return "  ".join(parts)


# -- adding up ------------------------------------------------------------------


def derived(result: dict[str, Any]) -> dict[str, Any]:
    """Per-run figures computed from the raw counters."""
    if "error" in result or "posts" not in result:
        return result
    out = dict(result)
    basis = result["n"]
    if result.get("timed_out") or result.get("box_s"):
        basis = max(1, result.get("ok", 0))
    out["posts_per_10k"] = result["posts"] * 10_000 / basis
    out["gets_per_10k"] = result["gets"] * 10_000 / basis
    accepted = result.get("accepted", 0)
    out["polls_per_job"] = result["gets"] / accepted if accepted else math.nan
    if "batch_calls" in result:
        out["batches_per_10k"] = result["batch_calls"] * 10_000 / result["n"]
    return out


def median(values: Iterable[float]) -> float:
    finite = [v for v in values if isinstance(v, (int, float)) and not math.isnan(v)]
    return statistics.median(finite) if finite else math.nan


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians of every numeric figure over the successful runs of one entrant."""
    good = [derived(r) for r in runs if "error" not in r]
    out: dict[str, Any] = {"reps": len(good), "failed": len(runs) - len(good)}
    if not good:
        out["error"] = runs[0].get("error") if runs else "not run"
        return out
    keys = {k for r in good for k, v in r.items() if isinstance(v, (int, float))}
    for key in sorted(keys):
        out[key] = median(r.get(key, math.nan) for r in good)
    out["max_of_lag_max_ms"] = max((r.get("lag_max_ms", 0.0) for r in good), default=math.nan)
    out["max_of_late_max_ms"] = max(
        (r["late_max_ms"] for r in good if not math.isnan(r.get("late_max_ms", math.nan))),
        default=math.nan,
    )
    out["sum_429"] = sum(r.get("rate_limited_429", 0) for r in good)
    for key in ("top", "errors", "close"):
        if key in good[0]:
            out[key] = good[0][key]
    return out


def paired_ratio(
    runs: dict[str, list[dict[str, Any]]], a: str, b: str, key: str
) -> tuple[float, list[float]]:
    """Median over repetitions of ``a[key] / b[key]`` (same repetition, so same conditions)."""
    by_rep_b = {r["rep"]: r for r in runs.get(b, []) if "error" not in r}
    ratios = []
    for ra in runs.get(a, []):
        rb = by_rep_b.get(ra.get("rep"))
        if rb is None or "error" in ra or not rb.get(key):
            continue
        ratios.append(ra[key] / rb[key])
    return median(ratios), ratios
