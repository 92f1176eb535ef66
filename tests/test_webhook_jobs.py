"""From a reward_batch.completed delivery (failures by value) to a batch's verdict (by position)."""

from __future__ import annotations

import attrs
import pytest

import thanx_async as ta
from thanx_async._outcomes import JobVerdict
from thanx_async._webhook_jobs import job_from_completion
from thanx_async.webhooks import BatchFailure, RewardBatchCompleted


@attrs.frozen
class Person:
    type: str
    value: str
    dedupe_key: str | None = None


BATCH = [
    Person("email", "a@example.com"),
    Person("phone", "+14155550101"),
    Person("email", "c@example.com"),
]


def completed(**fields: object) -> RewardBatchCompleted:
    defaults: dict[str, object] = {
        "issuance_job_id": "job_1",
        "state": ta.JobState.COMPLETED,
        "total_count": 3,
        "issued_count": 2,
        "failed_count": 1,
        "failures": (BatchFailure(user_identifier="C@Example.com", reason="User not found"),),
    }
    return RewardBatchCompleted(**{**defaults, **fields})  # type: ignore[arg-type]


def statuses(job: ta.IssuanceJob, people: list[Person]) -> list[str]:
    verdict = JobVerdict.of(job, len(people))
    return [o.status.value for o in verdict.outcomes(0, people)]  # type: ignore[arg-type]


def test_failures_by_value_become_failures_by_position() -> None:
    """A failure named by value (any case) fails that position; the others are issued."""
    job = job_from_completion(completed(), BATCH)  # type: ignore[arg-type]
    assert job is not None
    assert statuses(job, BATCH) == ["issued", "issued", "failed"]


@pytest.mark.parametrize(
    "fields",
    [
        {"total_count": None},
        {"total_count": 4},
        {"issued_count": 3},
        {"failures": (BatchFailure(user_identifier="z@example.com"),)},
        {"failures": (BatchFailure(user_identifier="not an identifier"),)},
        {"failed_count": 0, "issued_count": 3},
        {"state": ta.JobState("archived")},
    ],
    ids=["no-total", "total-4", "sum-4", "stranger", "garbage", "more-listed", "unknown-state"],
)
def test_a_delivery_that_does_not_account_for_the_batch_is_no_evidence(
    fields: dict[str, object],
) -> None:
    """Missing or inconsistent counts, or a failure naming nobody of the batch: poll instead."""
    assert job_from_completion(completed(**fields), BATCH) is None  # type: ignore[arg-type]


def test_a_value_held_twice_and_listed_once_is_unclear() -> None:
    """Under two dedupe keys one value is two issuances: which one failed is unknown: poll."""
    twice = [*BATCH, Person("email", "c@example.com", "event-2")]
    event = completed(total_count=4, issued_count=3)
    assert job_from_completion(event, twice) is None  # type: ignore[arg-type]
    both = completed(
        total_count=4,
        issued_count=2,
        failed_count=2,
        failures=(BatchFailure(user_identifier="c@example.com"),) * 2,
    )
    job = job_from_completion(both, twice)  # type: ignore[arg-type]
    assert job is not None
    assert statuses(job, twice) == ["issued", "issued", "failed", "failed"]


def test_a_failed_job_needs_no_counts() -> None:
    """A job that failed rewarded nobody, whatever its counts say."""
    job = job_from_completion(completed(state=ta.JobState.FAILED, total_count=None), BATCH)  # type: ignore[arg-type]
    assert job is not None
    assert job.state is ta.JobState.FAILED
