"""The job tracker: follows accepted issuance jobs to their end with few polls.

One tracker per batcher runs one task. Each job gets a future that resolves to
the job in its terminal state (or raises ``JobTimeoutError`` or the final
``APIError``). Polls run on the client's shared rate budget as background
requests, so they never starve POSTs.

The schedule predicts when a job will end instead of polling at fixed
intervals, and polls just after that. The prediction comes from
:class:`~thanx_async._pace.Pace`, which learns the server's start delay and
processing speed from what the client sees on its own clock: when it saw a
job accepted, when each poll's answer arrived and what it said (state and
progress). Server timestamps are only coarse bounds (+/-1 s): the API stamps
whole seconds, on a clock that is not ours. Until something is learnt, one
job (the scout) is looked at soon and then at growing intervals, and the
others wait for what it learns; a poll that finds a job still running
re-predicts from its progress. With a steady server most jobs need one poll,
and one in a few needs a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
from collections.abc import Callable
from typing import Protocol

import attrs

from thanx_async._errors import (
    APIError,
    JobTimeoutError,
    MalformedResponseError,
    RateLimitError,
    ServerError,
    TransportError,
)
from thanx_async._models import IssuanceJob, JobState
from thanx_async._pace import JobView, Pace
from thanx_async._telemetry import BatchTelemetry, JobScope
from thanx_async._transport._ratelimit import BudgetSignal

__all__ = ["JobReader", "JobTracker"]

logger = logging.getLogger("thanx_async.jobs")

# Errors worth polling again for; anything else (404, 403, ...) ends tracking.
_TRANSIENT = (TransportError, ServerError, RateLimitError, MalformedResponseError)
#: A poll answered this much later than scheduled was held up (rate budget,
#: retries): its answer says nothing about how good the prediction was.
_ON_TIME = 0.25
#: A job overdue by the prediction is looked at again after this share of its age.
_OVERDUE_SHARE = 0.1
#: Growth of the interval between polls while nothing is known of the pace.
_BACKOFF = 1.5
#: While the budget binds, a poll lands this share of a job's predicted duration late.
_SCARCE_SHARE = 0.1


class JobReader(Protocol):
    """What the tracker needs of a client: one job read (``ThanxClient`` has it)."""

    async def get_issuance_job(
        self, job_id: str, *, merchant_id: str, background: bool = False
    ) -> IssuanceJob:
        """Fetch an issuance job."""
        ...


@attrs.define(eq=False)
class _Tracked:
    job_id: str
    merchant_id: str
    view: JobView
    deadline: float | None
    future: asyncio.Future[IssuanceJob]
    polls: int = 0
    #: When the job should end, on the loop's clock (None: nothing known yet).
    predicted_end: float | None = None
    #: When the next poll is due; heap entries for any other time are stale.
    due: float | None = None
    #: A hint (its webhook) came: no later push is awaited for this job.
    hinted: bool = False
    scope: JobScope | None = None  # the batch its polls belong to (logs, traces)


class JobTracker:
    """Polls accepted jobs just after their predicted end and resolves one future per job.

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
    """

    def __init__(
        self,
        client: JobReader,
        *,
        job_timeout: float | None = 600.0,
        first_poll: float = 0.2,
        min_interval: float = 0.1,
        max_interval: float = 10.0,
        max_concurrent_polls: int = 8,
        on_poll: Callable[[], None] | None = None,
        budget: BudgetSignal | None = None,
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
        self._budget = budget
        #: Set when webhooks say when jobs end: polls are the safety net, this late.
        self._grace: float | None = None
        self._pace = Pace()
        #: While nothing is known of the pace, the one job polled to learn it.
        self._scout: _Tracked | None = None
        self._jobs: dict[str, _Tracked] = {}
        self._heap: list[tuple[float, int, _Tracked]] = []
        self._seq = itertools.count()
        self._wakeup = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._polls: set[asyncio.Task[None]] = set()
        #: Polls that are due and not answered yet (waiting for a slot or for budget).
        self._due_polls = 0
        self._no_due_polls = asyncio.Event()
        self._no_due_polls.set()
        self._closed = False

    @property
    def tracked(self) -> int:
        """Jobs still being followed."""
        return len(self._jobs)

    @property
    def pace(self) -> Pace:
        """What the tracker has learnt of the server's pace so far."""
        return self._pace

    def predicted_end(self, job_id: str) -> float | None:
        """When a followed job should end, on the event loop's clock (None: unknown)."""
        tracked = self._jobs.get(job_id)
        return None if tracked is None else tracked.predicted_end

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
            view=JobView(accepted_at=now, total=job.total_count or 1),
            deadline=None if self._job_timeout is None else now + self._job_timeout,
            future=loop.create_future(),
        )
        if self._telemetry is not None:
            tracked.scope = self._telemetry.capture()  # called from the batch's own task
        self._jobs[job.id] = tracked
        if job.is_terminal:  # a replayed key can return a finished job at once
            self._finish(tracked, job)
        else:
            # The 202 says "pending" whatever the truth: it is no evidence of a late start.
            self._schedule(tracked, now + self._next_wait(tracked, now))
        if self._runner is None:
            self._runner = loop.create_task(self._run(), name="thanx_async job tracker")
        return tracked.future

    def expect_pushes(self, grace: float) -> None:
        """Webhooks will tell when jobs end: poll only as a safety net, ``grace`` s after.

        A job's poll moves to after its predicted end plus ``grace``, so a job
        whose webhook arrives costs no poll at all; one whose webhook is lost
        (Thanx never retries them) is still polled and resolved. While the
        pace is unknown, jobs wait for a webhook to teach it (or for the
        longest poll interval) instead of being scouted.
        """
        if grace < 0:
            raise ValueError("grace must be >= 0")
        self._grace = grace

    def conclude(self, job_id: str, job: IssuanceJob) -> bool:
        """End a followed job with ``job`` (its final state, from a verified webhook).

        Returns False when the job is not followed (any more). Its end teaches
        the pace, as a poll's answer would.
        """
        tracked = self._jobs.get(job_id)
        if tracked is None:
            return False
        now = asyncio.get_running_loop().time()
        knew = self._pace.known
        if job.state is JobState.COMPLETED:
            self._pace.pushed(tracked.view, now)
        self._finish(tracked, job)
        if self._pace.known and not knew:
            # Jobs placed at the longest interval while nothing was known: their
            # safety-net polls can now go just after their predicted ends.
            self._replan_unknown(now, earlier_only=True)
        return True

    def notify_finished(self, job_id: str) -> bool:
        """Hint from outside (e.g. a webhook) that a job ended: poll it now.

        Returns False when the job is not tracked. Polling stays the source of
        truth: the hint only moves the next poll forward.
        """
        tracked = self._jobs.get(job_id)
        if tracked is None:
            return False
        tracked.hinted = True  # its push came: later polls do not wait for another
        self._schedule(tracked, asyncio.get_running_loop().time())
        return True

    def untrack(self, job_id: str) -> None:
        """Stop following a job (its future is cancelled)."""
        tracked = self._jobs.pop(job_id, None)
        if tracked is not None:
            tracked.future.cancel()
            self._release(tracked)

    def _schedule(self, tracked: _Tracked, when: float) -> None:
        tracked.due = when
        heapq.heappush(self._heap, (when, next(self._seq), tracked))
        self._wakeup.set()

    def _next_wait(self, tracked: _Tracked, now: float) -> float:
        """Seconds from now until the next poll of a job that is not over yet."""
        view = tracked.view
        end = tracked.predicted_end = self._pace.predict_end(view)
        pushed, scarce = self._grace is not None and not tracked.hinted, self._scarce()
        if end is None and pushed and self._scout is not tracked:
            # No scouting: a webhook will teach the pace; the longest interval
            # keeps the safety net.
            wait = self._max_interval
        elif end is None and self._scout not in (None, tracked):
            # Another job is being polled to learn the pace; what it learns re-plans this one.
            wait = self._max_interval
        elif end is None:
            # Nothing learnt yet: this job learns the pace for all. Look soon, then less
            # and less often.
            self._scout = tracked
            wait = self._first_poll * _BACKOFF**tracked.polls
        elif end > now:
            wait = end + self._pace.margin(view, end) - now
            if pushed:
                wait += self._grace or 0.0
            if scarce:
                # Every poll is a POST not sent: land surely after the end, once.
                wait += _SCARCE_SHARE * (end - view.accepted_at)
        else:
            # Overdue by the prediction: the pace changed; look again, backing off.
            wait = _OVERDUE_SHARE * (now - view.accepted_at)
        return self._bounded(tracked, wait, now)

    def _bounded(self, tracked: _Tracked, wait: float, now: float) -> float:
        """``wait`` within the poll interval limits, and no later than the job's deadline."""
        # The shortest gap is between two polls of a job: its first poll may come at once.
        wait = min(self._max_interval, max(self._min_interval if tracked.polls else 0.0, wait))
        if tracked.deadline is not None:
            wait = min(wait, max(0.0, tracked.deadline - now))
        return wait

    def _scarce(self) -> bool:
        """Whether the rate budget binds (then one poll per job, just after its end)."""
        return self._budget is not None and self._budget.saturated

    async def make_way(self) -> None:
        """Wait, while the budget binds, until the polls that are due have been sent.

        A new POST calls this first. Under saturation each job needs its one
        poll: if POSTs kept winning the budget, accepted jobs would pile up
        unresolved (their people waiting ever longer) while the budget went to
        more jobs. Due polls going first keeps POSTs and polls one to one, so
        everything accepted resolves. Without saturation POSTs never wait here.
        """
        while self._due_polls and self._scarce() and not self._closed:
            await self._no_due_polls.wait()

    def _replan_unknown(self, now: float, *, earlier_only: bool = False) -> None:
        """Plan again the polls that were placed while nothing was known of the pace."""
        for tracked in list(self._jobs.values()):
            if tracked.predicted_end is None and tracked.due is not None:
                when = now + self._next_wait(tracked, now)
                if not earlier_only or when < tracked.due:
                    self._schedule(tracked, when)

    def _release(self, tracked: _Tracked) -> None:
        """A job stops being followed: if it was the scout, another takes over."""
        if tracked is self._scout:
            self._scout = None
            self._replan_unknown(asyncio.get_running_loop().time())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            heap = self._heap
            while heap and (heap[0][2].future.done() or heap[0][2].due != heap[0][0]):
                heapq.heappop(heap)  # finished, or rescheduled since
            timeout = None
            if heap:
                timeout = heap[0][0] - loop.time()
                if timeout <= 0:
                    due, _, tracked = heapq.heappop(heap)
                    tracked.due = None
                    self._due_polls += 1
                    self._no_due_polls.clear()
                    try:
                        await self._poll_slots.acquire()
                    except BaseException:
                        self._poll_done()
                        raise
                    task = loop.create_task(self._poll(tracked, due))
                    self._polls.add(task)
                    task.add_done_callback(self._polls.discard)
                    continue
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout)

    async def _poll(self, tracked: _Tracked, due: float) -> None:
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
            self._answered(tracked, job, due)
        except Exception as exc:  # a bug must not strand the futures waiting on this job
            logger.exception("tracking job %s failed", tracked.job_id)
            self._fail(tracked, exc)
        finally:
            self._poll_slots.release()
            self._poll_done()

    def _poll_done(self) -> None:
        self._due_polls -= 1
        if not self._due_polls:
            self._no_due_polls.set()

    def _answered(self, tracked: _Tracked, job: IssuanceJob | None, due: float) -> None:
        """Learn from a poll's answer (None: it failed) and finish the job or plan the next poll."""
        # The server read the job at most one round trip before its answer arrived.
        now = asyncio.get_running_loop().time()
        scouting = tracked is self._scout
        if scouting:
            self._scout = None  # taken up again below if the pace is still unknown
        knew = self._pace.known
        try:
            self._learn_and_plan(tracked, job, due, now)
        finally:
            if scouting or (self._pace.known and not knew):
                self._replan_unknown(now)

    def _learn_and_plan(
        self, tracked: _Tracked, job: IssuanceJob | None, due: float, now: float
    ) -> None:
        if job is not None:
            logger.debug(
                "job %s: %s %d%% (poll %d)",
                tracked.job_id, job.state.value, job.progress_percent, tracked.polls,
            )  # fmt: skip
            if job.total_count > 0:
                tracked.view.total = job.total_count
            if job.is_terminal:
                # A poll placed late on purpose (budget scarce, webhooks expected) says
                # nothing about how early the job ended: no probing sooner from it.
                scarce = self._scarce()
                on_time = now - due <= _ON_TIME and not scarce and self._grace is None
                self._pace.ended(
                    tracked.view,
                    now,
                    job,
                    predicted=tracked.predicted_end,
                    on_time=on_time,
                    late_bound=scarce,
                )
                self._finish(tracked, job)
                return
            self._pace.observe(tracked.view, now, job)
        if tracked.deadline is not None and now >= tracked.deadline:
            self._fail(tracked, JobTimeoutError(tracked.job_id))
            return
        if tracked.due is not None:
            return  # a hint rescheduled it while this poll was out
        if job is None:
            wait = self._bounded(tracked, self._max_interval, now)
        else:
            wait = self._next_wait(tracked, now)
        self._schedule(tracked, now + wait)

    def _finish(self, tracked: _Tracked, job: IssuanceJob) -> None:
        if self._telemetry is not None and tracked.job_id in self._jobs:
            self._telemetry.job_done(tracked.scope, tracked.polls, job.state.value)
        self._jobs.pop(tracked.job_id, None)
        if not tracked.future.done():
            tracked.future.set_result(job)
        self._release(tracked)

    def _fail(self, tracked: _Tracked, exc: BaseException) -> None:
        if self._telemetry is not None and tracked.job_id in self._jobs:
            state = "timed_out" if isinstance(exc, JobTimeoutError) else "unfollowed"
            self._telemetry.job_done(tracked.scope, tracked.polls, state)
        self._jobs.pop(tracked.job_id, None)
        if not tracked.future.done():
            tracked.future.set_exception(exc)
        self._release(tracked)

    async def aclose(self) -> None:
        """Stop polling; the futures of jobs still followed are cancelled.

        Whoever waited on them (the batcher's batch tasks) has already stopped,
        so an exception set on them would only be logged as never retrieved.
        """
        self._closed = True
        self._no_due_polls.set()  # a POST waiting in make_way goes on (and meets the closing)
        tasks = [*self._polls, *([self._runner] if self._runner else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._scout = None
        for tracked in list(self._jobs.values()):
            self.untrack(tracked.job_id)
        self._heap.clear()
