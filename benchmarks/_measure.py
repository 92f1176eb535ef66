"""What a run measures on the client side: loop lag, per-identifier timing, CPU."""

from __future__ import annotations

import asyncio
import math
import time
from array import array
from collections.abc import Sequence
from typing import Any

TICK = 0.001


class LagTicker:
    """A task that sleeps 1 ms in a loop and records by how much each sleep overshot.

    The overshoot is how long the loop was busy with something else: the event
    loop lag a latency-sensitive task of the caller would suffer.
    """

    def __init__(self) -> None:
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        clock, lags = time.perf_counter, self.lags
        while True:
            before = clock()
            await asyncio.sleep(TICK)
            lags.append(clock() - before - TICK)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def summary(self) -> dict[str, float]:
        lags = sorted(self.lags) or [0.0]
        return {
            "lag_max_ms": lags[-1] * 1000,
            "lag_p99_ms": percentile(lags, 99) * 1000,
            "lag_over_5ms": sum(1 for lag in lags if lag > 0.005),
            "ticks": len(lags),
        }


def percentile(ordered: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (NaN when empty)."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def job_seconds(job: Any) -> float:
    """A finished job's duration by its own stamps (created to completed; +/-1 s when whole)."""
    if job is None or job.created_at is None or job.completed_at is None:
        return 0.0
    return float((job.completed_at - job.created_at).total_seconds())


class Recorder:
    """Per-identifier submit and outcome times, outcome kinds, and which job carried each.

    Outcomes are anything with ``.issued`` and ``.job`` (IssuanceOutcome and the
    baselines' Result both have them). The figures that need each job's real
    timing (``overhead``: submit-to-outcome minus the job's own duration, the
    time the client added; ``late``: from the job's end to its first outcome;
    ``late_last``: to its last outcome)
    are computed by :meth:`summary` from the emulator's exact timings, after
    the clock has stopped; the stamps in the answers are only whole seconds.
    """

    def __init__(self, n: int) -> None:
        self.n = n
        self.submitted_at = array("d", bytes(8 * n))
        self.resolved_at = array("d", bytes(8 * n))
        #: 1 + the index of the job that carried each identifier (0: no outcome).
        self.job_of = array("l", bytes(array("l").itemsize * n))
        self.resolved = 0
        self.issued = 0
        self.not_issued = 0
        self.errors: dict[str, int] = {}
        self.last_at = 0.0
        self._jobs: dict[str, int] = {}
        self._job_list: list[tuple[str, float, float]] = []  # id, first outcome at, stamped s
        self._last_at = array("d")  # per job (by number - 1): its last outcome so far
        self.all_done = asyncio.Event()

    def done(self, index: int, future: asyncio.Future[Any]) -> None:
        now = time.perf_counter()
        self.resolved += 1
        self.last_at = now
        if future.cancelled():
            self.errors["cancelled"] = self.errors.get("cancelled", 0) + 1
        elif (exc := future.exception()) is not None:
            name = type(exc).__name__
            self.errors[name] = self.errors.get(name, 0) + 1
        else:
            outcome = future.result()
            job = outcome.job
            key = "" if job is None else job.id
            number = self._jobs.get(key)
            if number is None:
                self._job_list.append((key, now, job_seconds(job)))
                self._last_at.append(now)
                number = self._jobs[key] = len(self._job_list)
            else:
                self._last_at[number - 1] = now
            self.job_of[index] = number
            self.resolved_at[index] = now
            if outcome.issued:
                self.issued += 1
            else:
                self.not_issued += 1
        if self.resolved == self.n:
            self.all_done.set()

    def summary(
        self, timings: dict[str, list[float]] | None = None, perf_to_mono: float = 0.0
    ) -> dict[str, Any]:
        """The run's figures; ``timings``: job id -> [created, finished] on ``time.monotonic``.

        ``perf_to_mono`` converts this process's ``perf_counter`` to ``time.monotonic``.
        Without timings (no emulator), job durations come from the answers' stamps.
        """
        timings = timings or {}
        durations = [0.0]  # index 0: no outcome
        lateness, last_lateness = [], []
        for (key, first_at, stamped), last_at in zip(self._job_list, self._last_at, strict=True):
            timing = timings.get(key)
            if timing is None:
                durations.append(stamped)
                continue
            created, finished = timing
            durations.append(finished - created)
            lateness.append(first_at + perf_to_mono - finished)
            last_lateness.append(last_at + perf_to_mono - finished)
        overheads = sorted(
            self.resolved_at[i] - self.submitted_at[i] - durations[self.job_of[i]]
            for i in range(self.n)
            if self.job_of[i]
        )
        jobs = durations[1:]
        lateness.sort()
        last_lateness.sort()
        ok = self.issued + self.not_issued
        return {
            "resolved": self.resolved,
            "issued": self.issued,
            "not_issued": self.not_issued,
            "errors": self.errors,
            "ok": ok,
            "overhead_p50_ms": percentile(overheads, 50) * 1000,
            "overhead_p99_ms": percentile(overheads, 99) * 1000,
            "late_p50_ms": percentile(lateness, 50) * 1000,
            "late_max_ms": (lateness[-1] if lateness else math.nan) * 1000,
            "late_last_p50_ms": percentile(last_lateness, 50) * 1000,
            "late_last_max_ms": (last_lateness[-1] if last_lateness else math.nan) * 1000,
            "jobs_seen": len(jobs),
            "job_seconds_mean": sum(jobs) / len(jobs) if jobs else math.nan,
        }
