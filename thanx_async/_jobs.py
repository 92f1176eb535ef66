"""The job tracker: follows accepted issuance jobs to their end with few polls.

One tracker per batcher runs one task. Each job gets a future that resolves to
the job in its terminal state (or raises ``JobTimeoutError`` or the final
``APIError``). Polls run on the client's shared rate budget as background
requests, so they never starve POSTs.

The schedule predicts when a job will end instead of polling at fixed
intervals. It learns two numbers from finished jobs, on the server's own clock
(so clock skew does not matter): the start delay (``started_at - created_at``)
and the processing speed (``total_count / (completed_at - started_at)``). A new
job's first poll is placed at its predicted end; a poll that finds it still
running re-predicts from the progress it reports (``processed_count`` or
``progress_percent``) and polls again just after the new estimate. With steady
server speed most jobs need one poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
from collections.abc import Callable

import attrs

from thanx_async._client import ThanxClient
from thanx_async._errors import (
    APIError,
    JobTimeoutError,
    MalformedResponseError,
    RateLimitError,
    ServerError,
    TransportError,
)
from thanx_async._models import IssuanceJob, JobState
from thanx_async._telemetry import BatchTelemetry, JobScope

__all__ = ["JobTracker"]

logger = logging.getLogger("thanx_async.jobs")

# Errors worth polling again for; anything else (404, 403, ...) ends tracking.
_TRANSIENT = (TransportError, ServerError, RateLimitError, MalformedResponseError)


@attrs.define(eq=False)
class _Tracked:
    job_id: str
    merchant_id: str
    total: int
    accepted_at: float
    deadline: float | None
    future: asyncio.Future[IssuanceJob]
    polls: int = 0
    last_seen: tuple[float, int] | None = None
    scope: JobScope | None = None  # the batch its polls belong to (logs, traces)


@attrs.define
class _Speed:
    """What the tracker has learnt about the server's pace (exponentially weighted)."""

    start_delay: float = 0.5
    per_second: float = 0.0  # 0 until the first job finishes: we know nothing yet
    weight: float = 0.5

    def learn(self, job: IssuanceJob) -> None:
        if job.created_at and job.started_at:
            delay = (job.started_at - job.created_at).total_seconds()
            if delay >= 0:
                self.start_delay += self.weight * (delay - self.start_delay)
        if job.started_at and job.completed_at and job.total_count:
            seconds = (job.completed_at - job.started_at).total_seconds()
            if seconds > 0:
                rate = job.total_count / seconds
                self.per_second = rate if not self.per_second else (
                    self.per_second + self.weight * (rate - self.per_second)
                )  # fmt: skip


class JobTracker:
    """Polls accepted jobs near their predicted end and resolves one future per job.

    Args:
        client: the client whose rate budget the polls share.
        job_timeout: seconds from acceptance after which a job's future raises
            ``JobTimeoutError`` (None: no limit).
        first_poll: seconds before the first poll while nothing is known yet.
        min_interval: the shortest gap between two polls of one job.
        max_interval: the longest gap between two polls of one job.
        max_concurrent_polls: polls in flight at once.
        on_poll: called after each poll (for counters).
        telemetry: the batcher's: polls run in their batch's scope, and are counted per job.
        clock: the monotonic clock (the loop's by default).
    """

    def __init__(
        self,
        client: ThanxClient,
        *,
        job_timeout: float | None = 600.0,
        first_poll: float = 0.5,
        min_interval: float = 0.1,
        max_interval: float = 10.0,
        max_concurrent_polls: int = 8,
        on_poll: Callable[[], None] | None = None,
        telemetry: BatchTelemetry | None = None,
    ) -> None:
        self._client = client
        self._telemetry = telemetry
        self._job_timeout = job_timeout
        self._first_poll = first_poll
        self._min_interval = min_interval
        self._max_interval = max_interval
        self._poll_slots = asyncio.Semaphore(max_concurrent_polls)
        self._on_poll = on_poll
        self._speed = _Speed()
        self._jobs: dict[str, _Tracked] = {}
        self._heap: list[tuple[float, int, _Tracked]] = []
        self._seq = itertools.count()
        self._wakeup = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._polls: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def tracked(self) -> int:
        """Jobs still being followed."""
        return len(self._jobs)

    def track(self, job: IssuanceJob, *, merchant_id: str) -> asyncio.Future[IssuanceJob]:
        """Follow an accepted job; the future resolves to its terminal state.

        Tracking the same job id twice returns the same future.
        """
        if self._closed:
            raise RuntimeError("the job tracker is closed")
        existing = self._jobs.get(job.id)
        if existing is not None:
            return existing.future
        loop = asyncio.get_running_loop()
        now = loop.time()
        tracked = _Tracked(
            job_id=job.id,
            merchant_id=merchant_id,
            total=job.total_count,
            accepted_at=now,
            deadline=None if self._job_timeout is None else now + self._job_timeout,
            future=loop.create_future(),
        )
        if self._telemetry is not None:
            tracked.scope = self._telemetry.capture()  # called from the batch's own task
        self._jobs[job.id] = tracked
        if job.is_terminal:  # a replayed key can return a finished job at once
            self._finish(tracked, job)
        else:
            self._schedule(tracked, now + self._predict(tracked, job, now))
        if self._runner is None:
            self._runner = loop.create_task(self._run(), name="thanx_async job tracker")
        return tracked.future

    def notify_finished(self, job_id: str) -> bool:
        """Hint from outside (e.g. a webhook) that a job ended: poll it now.

        Returns False when the job is not tracked. Polling stays the source of
        truth: the hint only moves the next poll forward.
        """
        tracked = self._jobs.get(job_id)
        if tracked is None:
            return False
        self._schedule(tracked, asyncio.get_running_loop().time())
        return True

    def untrack(self, job_id: str) -> None:
        """Stop following a job (its future is cancelled)."""
        tracked = self._jobs.pop(job_id, None)
        if tracked is not None:
            tracked.future.cancel()

    def _schedule(self, tracked: _Tracked, when: float) -> None:
        heapq.heappush(self._heap, (when, next(self._seq), tracked))
        self._wakeup.set()

    def _predict(self, tracked: _Tracked, job: IssuanceJob, now: float) -> float:
        """Seconds from now until the job is expected to be terminal (plus a small margin)."""
        total = job.total_count or tracked.total or 1
        done = job.processed_count or (job.progress_percent * total) // 100
        rate = 0.0
        if done and tracked.last_seen is not None:
            seen_at, seen_done = tracked.last_seen
            # Two observations while processing: the pace between them.
            if seen_done and done > seen_done and now > seen_at:
                rate = (done - seen_done) / (now - seen_at)
        if not rate and done:
            # One observation: the pace since the job started. Its own start delay is
            # on the server's clock (started_at - created_at), so skew does not matter.
            delay = self._speed.start_delay
            if job.started_at and job.created_at:
                delay = max(0.0, (job.started_at - job.created_at).total_seconds())
            started = tracked.accepted_at + delay
            if now > started:
                rate = done / (now - started)
        tracked.last_seen = (now, done)
        if rate:
            eta = (total - done) / rate
        elif self._speed.per_second:
            start_in = max(0.0, tracked.accepted_at + self._speed.start_delay - now)
            eta = start_in + total / self._speed.per_second
        else:
            # Nothing learnt yet: look soon, to learn the pace from the progress.
            eta = self._first_poll * (1.5**tracked.polls)
        # Land just after the predicted end rather than just before it.
        wait = eta * 1.05 + 0.05
        return min(self._max_interval, max(self._min_interval, wait))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while self._heap and self._heap[0][2].future.done():
                heapq.heappop(self._heap)
            timeout = None
            if self._heap:
                timeout = self._heap[0][0] - loop.time()
                if timeout <= 0:
                    _, _, tracked = heapq.heappop(self._heap)
                    await self._poll_slots.acquire()
                    task = loop.create_task(self._poll(tracked))
                    self._polls.add(task)
                    task.add_done_callback(self._polls.discard)
                    continue
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout)

    async def _poll(self, tracked: _Tracked) -> None:
        loop = asyncio.get_running_loop()
        if self._telemetry is not None:  # this task's logs and spans belong to the job's batch
            self._telemetry.enter(tracked.scope)
        try:
            if tracked.future.done():
                return
            try:
                job = await self._client.get_issuance_job(
                    tracked.job_id, merchant_id=tracked.merchant_id, background=True
                )
            except _TRANSIENT as exc:
                logger.info("poll of job %s failed (%s); will poll again", tracked.job_id, exc)
                job = None
            except APIError as exc:
                self._fail(tracked, exc)
                return
            tracked.polls += 1
            if self._on_poll is not None:
                self._on_poll()
            now = loop.time()
            if job is not None:
                logger.debug(
                    "job %s: %s %d%% (poll %d)",
                    tracked.job_id, job.state.value, job.progress_percent, tracked.polls,
                )  # fmt: skip
                if job.is_terminal:
                    self._finish(tracked, job)
                    return
            if tracked.deadline is not None and now >= tracked.deadline:
                self._fail(tracked, JobTimeoutError(tracked.job_id))
                return
            wait = self._max_interval if job is None else self._predict(tracked, job, now)
            if tracked.deadline is not None:
                wait = min(wait, max(0.0, tracked.deadline - now))
            self._schedule(tracked, now + wait)
        except Exception as exc:  # a bug must not strand the futures waiting on this job
            logger.exception("tracking job %s failed", tracked.job_id)
            self._fail(tracked, exc)
        finally:
            self._poll_slots.release()

    def _finish(self, tracked: _Tracked, job: IssuanceJob) -> None:
        if job.state is JobState.COMPLETED:
            self._speed.learn(job)
        if self._telemetry is not None and tracked.job_id in self._jobs:
            self._telemetry.job_done(tracked.scope, tracked.polls, job.state.value)
        self._jobs.pop(tracked.job_id, None)
        if not tracked.future.done():
            tracked.future.set_result(job)

    def _fail(self, tracked: _Tracked, exc: BaseException) -> None:
        if self._telemetry is not None and tracked.job_id in self._jobs:
            state = "timed_out" if isinstance(exc, JobTimeoutError) else "unfollowed"
            self._telemetry.job_done(tracked.scope, tracked.polls, state)
        self._jobs.pop(tracked.job_id, None)
        if not tracked.future.done():
            tracked.future.set_exception(exc)

    async def aclose(self) -> None:
        """Stop polling; the futures of jobs still followed are cancelled.

        Whoever waited on them (the batcher's batch tasks) has already stopped,
        so an exception set on them would only be logged as never retrieved.
        """
        self._closed = True
        tasks = [*self._polls, *([self._runner] if self._runner else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for tracked in list(self._jobs.values()):
            self.untrack(tracked.job_id)
        self._heap.clear()
