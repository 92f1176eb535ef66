"""How long the server takes over a job, learnt from what the client sees on its own clock.

A job of ``N`` identifiers is modelled as ``delay + N * per_item`` seconds from
the moment the client saw it accepted: ``delay`` until the server starts it,
``per_item`` seconds of processing per identifier. Both are learnt from the
answers to polls, stamped with the client's clock when they arrive:

* two ``processing`` answers of one job give its pace (``per_item``) directly;
* one ``processing`` answer and a known pace give its start, hence ``delay``;
* a ``pending`` answer later than ``delay`` says the server starts later now;
* a job already over at its first poll says only "it ended before this
  answer". The model then moves to the middle of what the evidence allows if
  it lies outside, or else predicts a little sooner for the next jobs, so that
  it keeps probing instead of drifting late (one early poll in a few gives a
  fresh ``processing`` answer to learn from).

Server timestamps (``created_at``, ``completed_at``) are used only as coarse
bounds, good to +/-1 s: the API documents whole seconds, and the server's
clock is not ours. The tracker polls at :meth:`Pace.predict_end` plus
:meth:`Pace.margin`.
"""

from __future__ import annotations

import attrs

from thanx_async._models import IssuanceJob, JobState

__all__ = ["JobView", "Pace"]

#: Weight of the newest evidence in the running estimates.
WEIGHT = 0.5
#: A job found already over when it was polled on time: predict the next ones
#: this share of their duration sooner.
SHRINK = 0.02
#: How far a server timestamp can be from the truth (the API stamps whole seconds).
STAMP_SLACK = 1.0
#: The part of a predicted duration added after it before polling: land just after the end.
MARGIN_SHARE = 0.05
MARGIN_MIN = 0.02


@attrs.define(eq=False)
class JobView:
    """What the client has seen of one job, on its own clock.

    Attributes:
        accepted_at: when the client saw the job accepted.
        total: identifiers in the job.
        pending_at: the latest answer that said ``pending``.
        first: the first ``processing`` answer, as (time, identifiers done).
        last: the latest ``processing`` answer, as (time, identifiers done).
        per_item: this job's own pace, once two ``processing`` answers differ.
        taught_delay: whether this job already taught the start delay.
    """

    accepted_at: float
    total: int
    pending_at: float | None = None
    first: tuple[float, float] | None = None
    last: tuple[float, float] | None = None
    per_item: float | None = None
    taught_delay: bool = False


def identifiers_done(job: IssuanceJob, total: int) -> float:
    """How many identifiers the answer says are processed (the middle of a percent step)."""
    if job.processed_count > 0:
        return float(min(job.processed_count, total))
    if job.progress_percent > 0:
        return min(float(total), (job.progress_percent + 0.5) * total / 100)
    return 0.0


def _stamped_seconds(job: IssuanceJob) -> float | None:
    """``completed_at - created_at`` by the server's stamps, if both are there."""
    if job.created_at is None or job.completed_at is None:
        return None
    try:
        return (job.completed_at - job.created_at).total_seconds()
    except TypeError:  # one stamp with a time zone, one without
        return None


def _blend(old: float | None, new: float) -> float:
    return new if old is None else old + WEIGHT * (new - old)


@attrs.define
class Pace:
    """The server's pace as the client has learnt it (None: not learnt yet).

    Attributes:
        delay: seconds from acceptance until a job is processed.
        per_item: seconds of processing per identifier.
    """

    delay: float | None = None
    per_item: float | None = None

    @property
    def known(self) -> bool:
        """Whether both the start delay and the pace per identifier have been learnt."""
        return self.delay is not None and self.per_item is not None

    def predict_end(self, view: JobView) -> float | None:
        """When the job should end, on the client's clock; None while nothing is known.

        This is the one place a job's end is predicted: the tracker polls just
        after it.
        """
        per_item = view.per_item if view.per_item is not None else self.per_item
        if view.last is not None:
            if per_item is None:
                return None  # processing, but at an unknown pace: look again soon
            at, done = view.last
            return at + max(0.0, view.total - done) * per_item
        if self.delay is None and per_item is None:
            return None
        start = view.accepted_at + (self.delay or 0.0)
        if view.pending_at is not None:
            start = max(start, view.pending_at)
        return start + view.total * (per_item or 0.0)

    @staticmethod
    def margin(view: JobView, end: float) -> float:
        """How long after a predicted end to poll: a share of the span it was extrapolated over."""
        since = view.last[0] if view.last is not None else view.accepted_at
        return MARGIN_MIN + MARGIN_SHARE * max(0.0, end - since)

    def observe(self, view: JobView, at: float, job: IssuanceJob) -> None:
        """Learn from an answer that the job is not over yet, received at ``at``."""
        if job.state is JobState.PENDING:
            view.pending_at = at
            if self.delay is not None and at - view.accepted_at > self.delay:
                # Still not started later than expected: the server starts later now.
                self.delay = _blend(self.delay, at - view.accepted_at)
            return
        if job.state is not JobState.PROCESSING:
            return  # revoking, or a state this SDK does not know: no pace in it
        done = identifiers_done(job, view.total)
        measured = False
        if view.first is None:
            view.first = (at, done)
        elif done > view.first[1] and at > view.first[0]:
            view.per_item = (at - view.first[0]) / (done - view.first[1])
            self.per_item = _blend(self.per_item, view.per_item)
            measured = True
        view.last = (at, done)
        if self.per_item is None and self.delay is not None and done > 0:
            # No pace yet, but a start delay (from jobs that were over at their first look):
            # a first guess from when this one should have started; two answers correct it.
            start = view.accepted_at + self.delay
            if view.pending_at is not None:
                start = max(start, view.pending_at)
            if at > start:
                self.per_item = (at - start) / done
                view.taught_delay = True  # the delay was the premise of this guess
        per_item = view.per_item if view.per_item is not None else self.per_item
        # The start is dated with the best pace at hand: again once the job's own is measured.
        if per_item is not None and (measured or not view.taught_delay):
            view.taught_delay = True
            start = min(at - done * per_item, view.first[0])  # processing since `first` at least
            if view.pending_at is not None:
                start = max(start, view.pending_at)
            self.delay = _blend(self.delay, max(0.0, start - view.accepted_at))

    def ended(
        self,
        view: JobView,
        at: float,
        job: IssuanceJob,
        *,
        predicted: float | None = None,
        on_time: bool = False,
        late_bound: bool = False,
    ) -> None:
        """Learn from a terminal answer received at ``at``.

        Args:
            view: what was seen of the job before.
            at: when the answer arrived.
            job: the answer.
            predicted: the end this poll was placed after (None: none was known).
            on_time: the poll went out when it was scheduled (not held up by
                the rate budget or a retry), so its answer tests the prediction.
            late_bound: with nothing known and a late answer, start the model
                at the latest end the job's stamps allow (the tracker asks for
                this while the budget binds, when no answer is on time).
        """
        if view.last is not None or job.state is not JobState.COMPLETED:
            return  # learnt while it ran; or it did not run its course
        # It ended after the last "not over" answer and before this one.
        low = view.pending_at if view.pending_at is not None else view.accepted_at
        high = at
        stamped = _stamped_seconds(job)
        if stamped is not None:
            low_s = max(low, view.accepted_at + stamped - STAMP_SLACK)
            high_s = min(high, view.accepted_at + stamped + STAMP_SLACK)
            if low_s <= high_s:  # otherwise the stamps contradict what we saw: ignore them
                low, high = low_s, high_s
        end = self.predict_end(view)
        if end is None:
            if on_time:
                self._fit(view, (low + high) / 2 - view.accepted_at)
            elif late_bound and high < at:
                # Only late answers come while the budget binds, and without a model
                # every job waits the longest interval, its poll landing among POSTs.
                # The stamps bound the end from above: start the model there. Too late a
                # prediction costs latency, never budget; later answers correct it.
                self._fit(view, high - view.accepted_at)
        elif not low <= end <= high:
            self._fit(view, (low + high) / 2 - view.accepted_at)
        elif on_time and predicted is not None:
            # Sooner than the prediction this poll tested, not than the model now: many
            # jobs placed by one model and found over together must not shrink it many times.
            sooner = (predicted - view.accepted_at) * (1 - SHRINK)
            if end - view.accepted_at > sooner:
                self._fit(view, sooner)

    def pushed(self, view: JobView, at: float) -> None:
        """Learn from being told (by a webhook) at ``at`` that the job just ended.

        Unlike a poll's answer, a push dates the end itself: the model moves
        halfway (``WEIGHT``) towards it, or to it when nothing was known.
        """
        if view.last is not None:
            return  # learnt while it ran
        seconds = at - view.accepted_at
        end = self.predict_end(view)
        if end is not None:
            predicted = end - view.accepted_at
            seconds = predicted + WEIGHT * (seconds - predicted)
        self._fit(view, seconds)

    def _fit(self, view: JobView, seconds: float) -> None:
        """Change the model so that a job like ``view`` takes ``seconds`` from acceptance.

        The start delay moves first: the pace is only ever measured directly,
        from two answers of one job.
        """
        seconds = max(0.0, seconds)
        work = view.total * (self.per_item or 0.0)
        if seconds >= work:
            self.delay = seconds - work
        else:
            self.delay = 0.0
            if self.per_item is not None and view.total:
                self.per_item = seconds / view.total
