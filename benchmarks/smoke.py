"""The CI smoke benchmark: ``python -m benchmarks.smoke`` (``nox -s bench-smoke``), under a minute.

Catches gross regressions only. Every check compares two things measured in
the same invocation on the same machine (RewardBatcher against the hand-rolled
baseline, or against the configured rate limits), never an absolute time, and
each threshold leaves several times the noise of a busy 2-core runner. The
targets themselves are checked by the full suite (``nox -s bench``).

``--report-only`` prints the figures and always exits 0.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from typing import Any

from benchmarks._report import allowed_requests
from benchmarks._suite import (
    FAST_JOBS,
    RAISED_LIMITS,
    Entrant,
    Experiment,
    _spec,
    derived,
    paired_ratio,
    run_experiment,
    summarise,
)

#: RewardBatcher's burst throughput may fall to this fraction of (c)'s (target: 1.2).
MIN_THROUGHPUT_VS_HANDROLLED = 0.25
#: ... and its client CPU per identifier rise to this multiple of (c)'s (target: 0.8).
MAX_CPU_VS_HANDROLLED = 4.0
#: Bytes per pending identifier, as a multiple of (c)'s (target: 400 B, (c) needs ~230).
MAX_MEMORY_VS_HANDROLLED = 4.0
#: Full batches: POSTs per 10,000 identifiers in a burst (ideal 1.0).
MAX_POSTS_PER_10K = 1.5
#: Polls per job with 2.5 s jobs (target 3).
MAX_POLLS_PER_JOB = 4.5
#: Share of the rate budget used when saturated (target 95%).
MIN_BUDGET_USE = 0.8

SMOKE_W4_LIMITS = {"per_second": 5, "per_window": 11, "window": 5.0}
SMOKE_W4_BOX = 10.0


def plan() -> list[Experiment]:
    fast = FAST_JOBS | RAISED_LIMITS
    return [
        Experiment(
            "burst", "40,000 identifiers, fast jobs",
            _spec("burst", 40_000, fast, page=100, deadline=60.0),
            [Entrant("sdk", "sdk"), Entrant("handrolled", "handrolled")],
            3,
        ),
        Experiment(
            "polls", "20,000 identifiers, jobs of 2.5 s",
            _spec("burst", 20_000, {"speed": 5_000.0, "start_delay": 0.5} | RAISED_LIMITS,
                  page=100, deadline=60.0),
            [Entrant("sdk", "sdk")],
            1,
        ),
        Experiment(
            "saturate", "rate limits on a 5 s window, batches of 100",
            _spec("burst", 5_000, FAST_JOBS | SMOKE_W4_LIMITS, page=100, max_batch_size=100,
                  box=SMOKE_W4_BOX, sdk_options={"close_timeout": 1.0}),
            [Entrant("sdk", "sdk")],
            1,
        ),
        Experiment(
            "memory", "20,000 identifiers pending",
            _spec("memory", 20_000, {"start_delay": 3600.0, "speed": 1.0} | RAISED_LIMITS),
            [Entrant("sdk", "sdk"), Entrant("handrolled", "handrolled")],
            1,
        ),
    ]  # fmt: skip


def checks(runs: dict[str, dict[str, list[dict[str, Any]]]]) -> list[tuple[str, float, str, bool]]:
    """(what, measured, bound, passed) for every check."""
    out: list[tuple[str, float, str, bool]] = []

    def check(what: str, value: float, bound: float, ok: Callable[[float, float], bool]) -> None:
        sign = ">=" if ok(bound + 1, bound) and not ok(bound - 1, bound) else "<="
        out.append((what, value, f"{sign} {bound:g}", not math.isnan(value) and ok(value, bound)))

    burst = runs["burst"]
    for label in ("sdk", "handrolled"):
        failed = [r["error"] for r in burst[label] if "error" in r]
        out.append((f"burst: {label} runs completed", len(burst[label]) - len(failed),
                    f"== {len(burst[label])}", not failed))  # fmt: skip
    ratio, _ = paired_ratio(burst, "sdk", "handrolled", "ids_per_s")
    check("burst: throughput sdk / handrolled", ratio, MIN_THROUGHPUT_VS_HANDROLLED,
          lambda v, b: v >= b)  # fmt: skip
    ratio, _ = paired_ratio(burst, "sdk", "handrolled", "cpu_per_100k_s")
    check("burst: CPU per identifier sdk / handrolled", ratio, MAX_CPU_VS_HANDROLLED,
          lambda v, b: v <= b)  # fmt: skip
    posts = summarise(burst["sdk"]).get("posts_per_10k", math.nan)
    check("burst: sdk POSTs per 10,000", posts, MAX_POSTS_PER_10K, lambda v, b: v <= b)
    polls = summarise(runs["polls"]["sdk"]).get("polls_per_job", math.nan)
    check("polls: sdk polls per job (2.5 s jobs)", polls, MAX_POLLS_PER_JOB, lambda v, b: v <= b)
    sat = [derived(r) for r in runs["saturate"]["sdk"] if "error" not in r]
    limited = float(sum(r.get("rate_limited_429", 0) for r in sat)) if sat else math.nan
    check("saturate: 429s received", limited, 0, lambda v, b: v <= b)
    allowed = allowed_requests(SMOKE_W4_LIMITS, SMOKE_W4_BOX)
    used = sat[0].get("box_requests", 0) / allowed if sat else math.nan
    check("saturate: share of the budget used", used, MIN_BUDGET_USE, lambda v, b: v >= b)
    mem = runs["memory"]
    sdk_b = summarise(mem["sdk"]).get("bytes_per_pending", math.nan)
    hand_b = summarise(mem["handrolled"]).get("bytes_per_pending", math.nan)
    check("memory: bytes per pending sdk / handrolled", sdk_b / hand_b,
          MAX_MEMORY_VS_HANDROLLED, lambda v, b: v <= b)  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.smoke")
    parser.add_argument("--report-only", action="store_true", help="never fail")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    runs = {}
    for exp in plan():
        print(f"{exp.key}: {exp.title}", flush=True)
        runs[exp.key] = run_experiment(exp, log=lambda line: print(line, flush=True))
    results = checks(runs)
    print()
    for what, value, bound, ok in results:
        print(f"  {'ok  ' if ok else 'FAIL'} {what:<46} {value:>10.2f}  (bound {bound})")
    failed = sum(1 for *_, ok in results if not ok)
    elapsed = time.perf_counter() - started
    within = len(results) - failed
    print(f"bench-smoke in {elapsed:.0f} s: {within} checks within bounds, {failed} over")
    return 0 if args.report_only or not failed else 1


if __name__ == "__main__":
    sys.exit(main())
