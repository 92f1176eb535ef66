"""The job tracker's schedule, on virtual time: few polls, outcomes soon after each job's end.

The tracker runs on an event loop whose clock only moves when every task is
waiting (it jumps to the next timer), against the emulator's own job model and
endpoint code called in-process. The emulator reads the same clock, so
seconds-long jobs run in milliseconds and every figure below is exact and
repeatable: no timing flakiness, no real waits.
"""

from __future__ import annotations

import asyncio
import selectors
import statistics
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import attrs
import orjson
import pytest

from thanx_async._errors import JobTimeoutError, NotFoundError
from thanx_async._jobs import JobTracker
from thanx_async._models import IssuanceJob, JobState
from thanx_async._pace import STAMP_SLACK, JobView, Pace
from thanx_async._serde import read_job
from thanx_async.testing import (
    DEFAULT_CAMPAIGN_ID,
    DEFAULT_CLIENT_ID,
    DEFAULT_MERCHANT_ID,
    DEFAULT_VARIANT_ID,
    EmulatorState,
)
from thanx_async.testing._endpoints import get_job, issue

T = TypeVar("T")
TIMESPECS = ["seconds", "milliseconds"]
#: Where the emulator's wall clock starts within a second: the stamps' phase.
PHASES = [0.0, 0.3, 0.6, 0.9]


# -- virtual time ---------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0


class _JumpingSelector(selectors.DefaultSelector):
    """Instead of sleeping until the next timer, move the clock to it."""

    def __init__(self, clock: _Clock) -> None:
        super().__init__()
        self.clock = clock

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:
            raise RuntimeError("deadlock: every task waits and no timer is set")
        self.clock.now += timeout
        return []


class _VirtualLoop(asyncio.SelectorEventLoop):
    def __init__(self, clock: _Clock) -> None:
        super().__init__(_JumpingSelector(clock))
        self.clock = clock

    def time(self) -> float:
        return self.clock.now


def on_virtual_time(main: Callable[[], Awaitable[T]]) -> T:
    """Run ``main()`` on an event loop with a virtual clock."""
    loop = _VirtualLoop(_Clock())
    try:
        return loop.run_until_complete(main())
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


# -- the emulator, in-process ---------------------------------------------------


class EmulatorJobs:
    """The tracker's ``client``: the emulator's issue and job endpoints, called in-process.

    Each call takes a round trip of virtual time, half before the server reads
    its state and half after; the answer is parsed by the SDK's own code.
    """

    def __init__(self, state: EmulatorState, *, round_trip: float = 0.004) -> None:
        self.state = state
        self.round_trip = round_trip
        self.credential = state.credentials[DEFAULT_CLIENT_ID]
        self.polls: Counter[str] = Counter()
        self.answer: Callable[[IssuanceJob], IssuanceJob] = lambda job: job
        #: Seconds a poll waits before it is sent (as for rate budget), by job id.
        self.hold: Callable[[str], float] = lambda _: 0.0
        self._next = 0

    async def issue(self, count: int) -> IssuanceJob:
        """Create a job of ``count`` new identifiers (a 202 is always ``pending``)."""
        items = [
            {"type": "email", "value": f"guest.{self._next + i}@example.com"} for i in range(count)
        ]
        self._next += count
        payload = {
            "merchant_id": DEFAULT_MERCHANT_ID, "campaign_id": DEFAULT_CAMPAIGN_ID,
            "variant_id": DEFAULT_VARIANT_ID, "identifiers": items,
        }  # fmt: skip
        await asyncio.sleep(self.round_trip / 2)
        reply = issue(self.state, self.credential, orjson.dumps(payload), payload, None)
        await asyncio.sleep(self.round_trip / 2)
        return read_job(reply.body)

    async def get_issuance_job(
        self, job_id: str, *, merchant_id: str, background: bool = False
    ) -> IssuanceJob:
        """``GET /partner/issuance_jobs/{id}``, counted."""
        assert background, "the tracker's polls yield the budget to POSTs"
        await asyncio.sleep(self.hold(job_id) + self.round_trip / 2)
        self.polls[job_id] += 1
        reply = get_job(self.state, job_id, {"merchant_id": merchant_id})
        await asyncio.sleep(self.round_trip / 2)
        return self.answer(read_job(reply.body))


@attrs.frozen
class Followed:
    """What following a run of jobs cost: polls per job and lateness per job (seconds)."""

    polls: list[int]
    lateness: list[float]

    @property
    def mean_polls(self) -> float:
        return statistics.mean(self.polls)


def emulator(timespec: str, phase: float, **options: Any) -> EmulatorState:
    """Emulator state on the running loop's (virtual) clock; its wall clock starts at ``phase``."""
    loop = asyncio.get_running_loop()
    state = EmulatorState(
        clock=loop.time, rate_limit_per_second=None, rate_limit_per_window=None,
        timespec=timespec, **options,
    )  # fmt: skip
    state._wall_offset = 1_750_000_000 + phase - loop.time()
    return state


async def follow(
    state: EmulatorState,
    sizes: Sequence[int],
    *,
    gap: float,
    overlap: bool,
    jobs: EmulatorJobs | None = None,
    before_each: Callable[[int], None] = lambda _: None,
) -> Followed:
    """Issue jobs of ``sizes`` ``gap`` s apart, each followed by one tracker, to their end.

    ``overlap``: the next job is issued while the earlier ones run (a burst);
    otherwise each is issued ``gap`` s after the previous one ended.
    """
    loop = asyncio.get_running_loop()
    jobs = jobs or EmulatorJobs(state)
    tracker = JobTracker(jobs, job_timeout=None)
    lateness: dict[str, float] = {}

    async def one(index: int, size: int) -> None:
        before_each(index)
        job = await jobs.issue(size)
        final = await tracker.track(job, merchant_id=DEFAULT_MERCHANT_ID)
        assert final.state is JobState.COMPLETED
        lateness[job.id] = loop.time() - state.jobs[job.id].finished

    try:
        running = []
        for index, size in enumerate(sizes):
            if overlap:
                running.append(loop.create_task(one(index, size)))
            else:
                await one(index, size)
            await asyncio.sleep(gap)
        await asyncio.gather(*running)
    finally:
        await tracker.aclose()
    order = list(state.jobs)
    return Followed([jobs.polls[j] for j in order], [lateness[j] for j in order])


def five_second_jobs(timespec: str, phase: float, *, overlap: bool) -> Followed:
    """Ten 10,000-identifier jobs of 0.5 + 4.5 s, 0.37 s apart."""

    async def main() -> Followed:
        state = emulator(timespec, phase, start_delay=0.5, speed=10_000 / 4.5)
        return await follow(state, [10_000] * 10, gap=0.37, overlap=overlap)

    return on_virtual_time(main)


# -- the targets ----------------------------------------------------------------


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("timespec", TIMESPECS)
@pytest.mark.parametrize("overlap", [True, False], ids=["burst", "one-by-one"])
def test_five_second_jobs_need_few_polls_and_end_on_time(
    timespec: str, phase: float, overlap: bool
) -> None:
    """5 s jobs: <= 3 polls per job on average, each outcome within 1 s of the job's end."""
    followed = five_second_jobs(timespec, phase, overlap=overlap)
    assert followed.mean_polls <= 3.0, followed
    assert max(followed.polls) <= 4, followed
    assert sorted(followed.polls)[-2] <= 2, followed  # only the job that learns the pace polls more
    assert max(followed.lateness) <= 1.0, followed
    assert min(followed.lateness) >= 0.0


@pytest.mark.parametrize("seconds", [2.0, 5.0, 9.5])
@pytest.mark.parametrize("timespec", TIMESPECS)
def test_jobs_of_two_to_ten_seconds(timespec: str, seconds: float) -> None:
    """Across the 2-10 s band, one job after another: few polls, outcomes within 1 s."""

    async def main() -> Followed:
        state = emulator(timespec, 0.5, start_delay=0.5, speed=10_000 / (seconds - 0.5))
        return await follow(state, [10_000] * 12, gap=0.41, overlap=False)

    followed = on_virtual_time(main)
    assert followed.mean_polls <= 2.5, followed
    assert max(followed.polls[1:]) <= 2, followed  # once the pace is known
    assert max(followed.lateness) <= 1.0, followed


@pytest.mark.parametrize("timespec", TIMESPECS)
def test_jobs_of_mixed_sizes(timespec: str) -> None:
    """Batches of 500 to 10,000 (a trickle's), overlapping: few polls, outcomes within 1 s."""
    sizes = [2_000, 10_000, 500, 6_000, 10_000, 2_000, 8_000, 1_000] * 3

    async def main() -> Followed:
        state = emulator(timespec, 0.2, start_delay=0.5, speed=1_100)
        return await follow(state, sizes, gap=1.0, overlap=True)

    followed = on_virtual_time(main)
    assert followed.mean_polls <= 2.0, followed
    assert max(followed.lateness) <= 1.0, followed


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("timespec", TIMESPECS)
@pytest.mark.parametrize("overlap", [True, False], ids=["burst", "one-by-one"])
def test_fast_jobs_resolve_within_300_ms(timespec: str, phase: float, overlap: bool) -> None:
    """Jobs of 50 ms (the first included) resolve within 0.3 s of their end, one poll each."""

    async def main() -> Followed:
        state = emulator(timespec, phase, start_delay=0.0, speed=20_000)
        return await follow(state, [1_000] * 20, gap=0.08, overlap=overlap)

    followed = on_virtual_time(main)
    assert max(followed.lateness) <= 0.3, followed
    assert statistics.median(followed.lateness) <= 0.1, followed
    assert max(followed.polls) == 1, followed


def test_burst_of_subsecond_jobs() -> None:
    """W1's jobs (0.7 s, 20 in a burst): outcomes within 0.15 s, under 1.5 polls per job."""

    async def main() -> Followed:
        state = emulator("seconds", 0.4, start_delay=0.2, speed=20_000)
        return await follow(state, [10_000] * 20, gap=0.08, overlap=True)

    followed = on_virtual_time(main)
    assert max(followed.lateness) <= 0.15, followed
    assert followed.mean_polls <= 1.5, followed


# -- what the pace is learnt from ------------------------------------------------


def test_pace_comes_from_the_clients_clock_not_the_stamps() -> None:
    """With every server timestamp missing, the targets still hold: the client's clock is enough."""

    async def main() -> Followed:
        state = emulator("seconds", 0.0, start_delay=0.5, speed=10_000 / 4.5)
        jobs = EmulatorJobs(state)
        jobs.answer = lambda job: attrs.evolve(
            job, created_at=None, started_at=None, completed_at=None
        )
        return await follow(state, [10_000] * 10, gap=0.37, overlap=False, jobs=jobs)

    followed = on_virtual_time(main)
    assert followed.mean_polls <= 2.0, followed
    assert max(followed.lateness) <= 1.0, followed


def test_a_server_clock_hours_off_changes_nothing() -> None:
    """Stamps from a server clock far from ours give the same schedule as stamps from ours."""

    async def main(offset: float) -> Followed:
        state = emulator("seconds", 0.0, start_delay=0.5, speed=10_000 / 4.5)
        state._wall_offset += offset
        return await follow(state, [10_000] * 8, gap=0.37, overlap=False)

    assert on_virtual_time(lambda: main(0.0)) == on_virtual_time(lambda: main(-7_200.0))


def test_a_server_that_speeds_up_is_caught_up_with() -> None:
    """Jobs that suddenly take 2.5 s instead of 5 s are on time again from the next job on."""
    speeds = [10_000 / 4.5] * 5 + [10_000 / 2.0] * 5

    async def main() -> Followed:
        state = emulator("seconds", 0.0, start_delay=0.5, speed=speeds[0])

        def pace(index: int) -> None:
            state.speed = speeds[index]

        return await follow(state, [10_000] * 10, gap=0.37, overlap=False, before_each=pace)

    followed = on_virtual_time(main)
    assert max(followed.lateness[6:]) <= 1.0, followed
    assert max(followed.polls[1:]) <= 3, followed


def test_a_server_that_slows_down_is_followed() -> None:
    """Jobs that suddenly take 8 s instead of 4 s still end on time, with at most 3 polls."""
    speeds = [10_000 / 3.5] * 5 + [10_000 / 7.5] * 5

    async def main() -> Followed:
        state = emulator("seconds", 0.0, start_delay=0.5, speed=speeds[0])

        def pace(index: int) -> None:
            state.speed = speeds[index]

        return await follow(state, [10_000] * 10, gap=0.37, overlap=False, before_each=pace)

    followed = on_virtual_time(main)
    assert max(followed.lateness) <= 1.0, followed
    assert max(followed.polls[1:]) <= 3, followed


def test_when_the_job_learning_the_pace_is_lost_another_takes_over() -> None:
    """The job polled to learn the pace ends in a 404: the others are still followed on time."""

    async def main() -> tuple[list[float], BaseException | None]:
        state = emulator("seconds", 0.0, start_delay=0.5, speed=10_000 / 4.5)
        jobs = EmulatorJobs(state)
        tracker = JobTracker(jobs, job_timeout=None)
        lost = ""

        def lose(job: IssuanceJob) -> IssuanceJob:
            if job.id == lost and jobs.polls[lost] >= 2:
                raise NotFoundError(404, "NOT_FOUND", "issuance job not found")
            return job

        jobs.answer = lose
        try:
            issued = [await jobs.issue(10_000) for _ in range(4)]
            lost = issued[0].id
            futures = [tracker.track(job, merchant_id=DEFAULT_MERCHANT_ID) for job in issued]
            outcomes = await asyncio.gather(*futures, return_exceptions=True)
            late = [
                asyncio.get_running_loop().time() - state.jobs[job.id].finished
                for job in issued[1:]
            ]
        finally:
            await tracker.aclose()
        first = outcomes[0]
        return late, first if isinstance(first, BaseException) else None

    late, error = on_virtual_time(main)
    assert isinstance(error, NotFoundError)
    assert max(late) <= 1.0, late


def test_job_timeout_holds_for_jobs_waiting_on_another() -> None:
    """job_timeout fails every job on time, those waiting for the pace to be learnt included."""

    async def main() -> list[tuple[BaseException | IssuanceJob, float]]:
        loop = asyncio.get_running_loop()
        state = emulator("seconds", 0.0, start_delay=60.0, speed=1_000)
        jobs = EmulatorJobs(state)
        tracker = JobTracker(jobs, job_timeout=1.5)
        results: list[tuple[BaseException | IssuanceJob, float]] = []

        async def one() -> None:
            job = await jobs.issue(1_000)
            started = loop.time()
            try:
                results.append((await tracker.track(job, merchant_id=DEFAULT_MERCHANT_ID), 0.0))
            except JobTimeoutError as exc:
                results.append((exc, loop.time() - started))

        try:
            first = loop.create_task(one())
            await asyncio.sleep(0.5)  # the first job has been seen pending by now
            await asyncio.gather(first, one(), one())
        finally:
            await tracker.aclose()
        return results

    results = on_virtual_time(main)
    assert len(results) == 3
    for outcome, after in results:
        assert isinstance(outcome, JobTimeoutError)
        assert 1.5 <= after <= 1.51


def test_small_jobs_first_then_large_ones() -> None:
    """Jobs over at their first look teach only a delay; the first large one learns the pace."""
    sizes = [200] * 5 + [10_000] * 5

    async def main() -> Followed:
        state = emulator("seconds", 0.0, start_delay=0.05, speed=2_000)
        return await follow(state, sizes, gap=0.37, overlap=False)

    followed = on_virtual_time(main)
    assert sum(followed.polls[:5]) <= 7, followed
    assert max(followed.polls[5:]) <= 3, followed
    assert max(followed.polls[7:]) <= 2, followed  # once the pace is known
    assert max(followed.lateness) <= 1.0, followed


def test_a_first_answer_held_up_by_the_budget_teaches_nothing() -> None:
    """A first job whose poll waited 3 s for budget does not make the next ones look 1 s long."""

    async def main() -> Followed:
        # 0.2 s jobs straddling a second: their stamps alone allow up to 2 s.
        state = emulator("seconds", 0.9, start_delay=0.0, speed=20_000)
        jobs = EmulatorJobs(state)
        first: list[str] = []

        def hold(job_id: str) -> float:
            first[:] = first or [job_id]
            return 3.0 if job_id == first[0] and jobs.polls[job_id] == 0 else 0.0

        jobs.hold = hold
        return await follow(state, [4_000] * 10, gap=0.13, overlap=False, jobs=jobs)

    followed = on_virtual_time(main)
    assert max(followed.lateness[1:]) <= 0.3, followed
    assert max(followed.polls) <= 4, followed


def test_predicted_end_is_the_jobs_end() -> None:
    """Once the pace is learnt, a new job's predicted end is within 0.25 s of its real end."""

    async def main() -> list[float]:
        state = emulator("seconds", 0.7, start_delay=0.5, speed=2_000)
        jobs = EmulatorJobs(state)
        tracker = JobTracker(jobs, job_timeout=None)
        errors = []
        try:
            for size in (10_000, 4_000, 10_000, 7_000, 1_000, 9_000):
                job = await jobs.issue(size)
                future = tracker.track(job, merchant_id=DEFAULT_MERCHANT_ID)
                predicted = tracker.predicted_end(job.id)
                if predicted is not None:
                    errors.append(predicted - state.jobs[job.id].finished)
                await future
        finally:
            await tracker.aclose()
        return errors

    errors = on_virtual_time(main)
    assert len(errors) >= 4  # the first job is followed before anything is known
    assert max(abs(e) for e in errors[1:]) <= 0.25, errors


def test_polls_held_up_by_the_budget_do_not_teach_a_faster_server() -> None:
    """Polls that go out seconds late (budget, retries) leave the learnt pace where it was."""

    async def main() -> tuple[Pace, Pace]:
        state = emulator("seconds", 0.0, start_delay=0.5, speed=2_000)
        jobs = EmulatorJobs(state)
        tracker = JobTracker(jobs, job_timeout=None)
        try:
            for _ in range(3):
                await tracker.track(await jobs.issue(10_000), merchant_id=DEFAULT_MERCHANT_ID)
            learnt = attrs.evolve(tracker.pace)
            jobs.round_trip = 4.0  # every answer now arrives 4 s after the poll was due
            for _ in range(5):
                await tracker.track(await jobs.issue(10_000), merchant_id=DEFAULT_MERCHANT_ID)
            return learnt, tracker.pace
        finally:
            await tracker.aclose()

    before, after = on_virtual_time(main)
    assert before.delay is not None
    assert before.per_item is not None
    assert after.delay == pytest.approx(before.delay, abs=0.05)
    assert after.per_item == pytest.approx(before.per_item, rel=0.01)


def test_a_hint_replaces_the_scheduled_poll() -> None:
    """notify_finished() polls at once, and the poll it replaced is not made as well."""

    async def main() -> int:
        state = emulator("seconds", 0.0, start_delay=0.0, speed=1.0)
        jobs = EmulatorJobs(state)
        tracker = JobTracker(jobs, job_timeout=None)
        try:
            job = await jobs.issue(1)
            future = tracker.track(job, merchant_id=DEFAULT_MERCHANT_ID)
            state.fail_job(job.id, immediately=True)
            assert tracker.notify_finished(job.id)
            assert (await future).state is JobState.FAILED
            await asyncio.sleep(5.0)  # long past the first scheduled poll
            return jobs.polls[job.id]
        finally:
            await tracker.aclose()

    assert on_virtual_time(main) == 1


# -- the model on its own -----------------------------------------------------------


def _job(
    state: str,
    done: int = 0,
    total: int = 1_000,
    *,
    created_at: str | None = None,
    completed_at: str | None = None,
) -> IssuanceJob:
    def stamp(text: str | None) -> datetime | None:
        return None if text is None else datetime.fromisoformat(text).replace(tzinfo=UTC)

    return IssuanceJob(
        id="job_1", state=JobState(state), total_count=total, processed_count=done,
        created_at=stamp(created_at), completed_at=stamp(completed_at),
    )  # fmt: skip


def test_two_processing_answers_give_the_pace_and_the_start() -> None:
    """Progress between two answers is the pace; the progress at the first dates the start."""
    pace, view = Pace(), JobView(accepted_at=10.0, total=1_000)
    pace.observe(view, 10.2, _job("pending"))
    pace.observe(view, 10.7, _job("processing", 100))
    assert pace.predict_end(view) is None  # one answer: the pace is not known yet
    pace.observe(view, 11.2, _job("processing", 350))
    assert pace.per_item == pytest.approx(0.002)
    assert pace.delay == pytest.approx(0.5)
    assert pace.predict_end(view) == pytest.approx(12.5)


def test_percent_only_progress_is_read_as_the_middle_of_its_step() -> None:
    """Without processed_count, progress_percent counts as its step's middle."""
    pace, view = Pace(), JobView(accepted_at=0.0, total=1_000)
    job = IssuanceJob(id="job_1", state=JobState.PROCESSING, total_count=1_000, progress_percent=10)
    pace.observe(view, 1.0, job)
    assert view.last == (1.0, 105.0)


def test_a_late_start_moves_the_start_delay() -> None:
    """A pending answer later than the learnt delay says the server starts later now."""
    pace, view = Pace(delay=0.5, per_item=0.001), JobView(accepted_at=0.0, total=1_000)
    pace.observe(view, 1.5, _job("pending"))
    assert pace.delay == pytest.approx(1.0)
    assert pace.predict_end(view) == pytest.approx(1.5 + 1.0)  # not before it was seen pending


def test_stamps_count_only_to_the_second() -> None:
    """Whole-second stamps correct a model that is off by more than 1 s, never a finer one."""
    job = _job(
        "completed", 1_000, created_at="2025-06-15T10:30:00", completed_at="2025-06-15T10:30:03"
    )
    # The model says 6 s; the stamps say 2-4 s: it moves to the middle of what both allow.
    pace, view = Pace(delay=1.0, per_item=0.005), JobView(accepted_at=0.0, total=1_000)
    pace.ended(view, 6.3, job, predicted=6.0, on_time=True)
    assert pace.predict_end(JobView(accepted_at=0.0, total=1_000)) == pytest.approx(3.0)
    # The model says 3.6 s: within a second of the stamps, so only the usual nudge sooner.
    pace, view = Pace(delay=0.6, per_item=0.003), JobView(accepted_at=0.0, total=1_000)
    pace.ended(view, 3.8, job, predicted=3.6, on_time=True)
    assert pace.predict_end(JobView(accepted_at=0.0, total=1_000)) == pytest.approx(3.6 * 0.98)


def test_stamps_that_contradict_the_clients_clock_are_ignored() -> None:
    """Stamps saying the job ended after the client saw it over are no evidence."""
    job = _job(
        "completed", 1_000, created_at="2025-06-15T10:30:00", completed_at="2025-06-15T10:30:09"
    )
    pace, view = Pace(delay=0.5, per_item=0.002), JobView(accepted_at=0.0, total=1_000)
    pace.ended(view, 2.6, job, predicted=2.5, on_time=True)
    assert pace.predict_end(JobView(accepted_at=0.0, total=1_000)) == pytest.approx(2.5 * 0.98)


def test_a_job_over_at_its_first_poll_teaches_an_upper_bound() -> None:
    """Knowing nothing, a job found over at 0.2 s makes the next ones expected within 0.2 s."""
    pace, view = Pace(), JobView(accepted_at=0.0, total=10_000)
    pace.ended(view, 0.2, _job("completed", 10_000, total=10_000), on_time=True)
    end = pace.predict_end(JobView(accepted_at=5.0, total=10_000))
    assert end is not None
    assert 5.0 < end <= 5.2


def test_jobs_found_over_together_nudge_the_model_once() -> None:
    """Ten jobs placed by one prediction and found over on time move it 2% sooner, not 10 x 2%."""
    pace = Pace(delay=0.5, per_item=0.0045)
    predicted = pace.predict_end(JobView(accepted_at=0.0, total=1_000))
    assert predicted == pytest.approx(5.0)
    for _ in range(10):
        view = JobView(accepted_at=0.0, total=1_000)
        pace.ended(view, 5.3, _job("completed", 1_000), predicted=predicted, on_time=True)
    assert pace.predict_end(JobView(accepted_at=0.0, total=1_000)) == pytest.approx(5.0 * 0.98)


def test_a_late_poll_does_not_nudge_the_model() -> None:
    """A job found over by a poll that went out late says nothing about the prediction."""
    pace = Pace(delay=0.5, per_item=0.0045)
    view = JobView(accepted_at=0.0, total=1_000)
    pace.ended(view, 8.0, _job("completed", 1_000), predicted=5.0, on_time=False)
    assert pace == Pace(delay=0.5, per_item=0.0045)


def test_while_the_budget_binds_a_late_answer_starts_the_model_at_the_stamps_bound() -> None:
    """No answer is on time under saturation: the stamps' latest end starts the model."""
    job = _job(
        "completed", 100, created_at="2025-06-15T10:30:00", completed_at="2025-06-15T10:30:00"
    )
    pace, view = Pace(), JobView(accepted_at=0.0, total=100)
    pace.ended(view, 9.0, job, on_time=False)  # the budget's ordinary lateness: nothing learnt
    assert not pace.known
    pace.ended(view, 9.0, job, on_time=False, late_bound=True)
    end = pace.predict_end(JobView(accepted_at=20.0, total=100))
    assert end is not None
    assert 20.0 < end <= 20.0 + STAMP_SLACK  # at most a second after acceptance, not 9
