"""From a signed ``reward_batch.completed`` delivery to the final job of one batch.

A delivery names failures by **value** and counts them as ``issued_count`` /
``failed_count``; the batcher decides outcomes by **position** from a job
(see :class:`~thanx_async._outcomes.JobVerdict`). This module translates one
into the other, and refuses when the delivery cannot be evidence: then the
job is polled, as if no webhook had come.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from thanx_async._models import IssuanceFailure, IssuanceJob, IssuanceSummary, JobState
from thanx_async._outcomes import Person

if TYPE_CHECKING:
    from thanx_async.webhooks import RewardBatchCompleted

__all__ = ["job_from_completion"]


def job_from_completion(
    event: RewardBatchCompleted, people: Sequence[Person]
) -> IssuanceJob | None:
    """The final job ``event`` describes for a batch of ``people`` (in batch order), or None.

    None (poll instead) when the delivery does not account for the batch: a
    count missing, ``total_count`` not the batch's size, issued and failed
    counts not adding up to it, more failures listed than counted, a failure
    naming nobody of the batch, or naming a value the batch holds several
    times (under different dedupe keys) fewer times than it holds it. A job
    that ``failed`` needs no counts: nobody was rewarded.
    """
    job_id = event.issuance_job_id
    if event.state is JobState.FAILED:
        return IssuanceJob(
            id=job_id, state=JobState.FAILED, total_count=event.total_count or len(people)
        )
    if event.state is not JobState.COMPLETED:
        return None
    size = len(people)
    total, issued, failed = event.total_count, event.issued_count, event.failed_count
    if total is None or issued is None or failed is None:
        return None
    if total != size or issued + failed != size or len(event.failures) > failed:
        return None
    failures = _by_position(event, people) if event.failures else []
    if failures is None:
        return None
    return IssuanceJob(
        id=job_id,
        state=JobState.COMPLETED,
        total_count=total,
        processed_count=total,
        success_count=issued,
        failure_count=failed,
        progress_percent=100,
        summary=IssuanceSummary(
            success_count=issued, failure_count=failed, failures=tuple(failures)
        ),
    )


def _by_position(
    event: RewardBatchCompleted, people: Sequence[Person]
) -> list[IssuanceFailure] | None:
    """The delivery's failures (by value) at their positions in the batch; None if unclear."""
    positions: dict[tuple[str, str], list[int]] = {}
    for index, person in enumerate(people):
        positions.setdefault((person.type, person.value), []).append(index)
    listed = Counter(failure.identifier for failure in event.failures)
    reasons = {failure.identifier: failure.reason for failure in event.failures}
    failures: list[IssuanceFailure] = []
    for identifier, times in listed.items():
        if identifier is None:
            return None  # a value that is neither an email nor a phone: not ours
        where = positions.get((identifier.type, identifier.value))
        if where is None or times != len(where):
            return None  # not in this batch, or which of its copies failed is unclear
        reason = reasons[identifier] or "failed"
        failures += [
            IssuanceFailure(identifier_index=index, identifier_type=identifier.type, error=reason)
            for index in where
        ]
    return failures
