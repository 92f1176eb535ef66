"""ISSUED only with evidence: a server whose answer does not account for the batch gets UNKNOWN."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import thanx_async as ta
from tests.hostile import ScriptedTransport, completed, scripted_client

PEOPLE = ["a@example.com", "b@example.com", "c@example.com"]


async def outcomes_for(
    answer: Any, *, journal: Path | None = None, job_timeout: float | None = None
) -> list[ta.IssuanceOutcome]:
    """Issue PEOPLE in one batch against a server answering polls with ``answer``."""
    transport = ScriptedTransport(answer)
    async with (
        scripted_client(transport) as client,
        ta.RewardBatcher(
            client,
            merchant_id="m",
            campaign_id="c",
            variant_id="v",
            max_wait=0.01,
            job_timeout=job_timeout,
            journal=journal,
        ) as batcher,
    ):
        async with asyncio.timeout(10):
            return list(await asyncio.gather(*(batcher.issue(p) for p in PEOPLE)))


def statuses(outcomes: list[ta.IssuanceOutcome]) -> list[str]:
    return [o.status.value for o in outcomes]


async def test_consistent_answer_issues_and_fails_by_position() -> None:
    """Control: counts that cover the batch give ISSUED, with the listed failure FAILED."""
    failure = {"identifier_index": 1, "identifier_type": "email", "error": "User not found"}
    outcomes = await outcomes_for(
        lambda job_id, sent: completed(
            job_id,
            sent,
            success_count=2,
            failure_count=1,
            summary={"success_count": 2, "failure_count": 1, "failures": [failure]},
        )
    )
    assert statuses(outcomes) == ["issued", "failed", "issued"]
    assert outcomes[1].error == "User not found"


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param(
            {
                "success_count": 1,
                "summary": {"success_count": 1, "failure_count": 0, "failures": []},
            },
            id="success-1-of-3",
        ),
        pytest.param({"total_count": 1}, id="total-1-for-3"),
        pytest.param(
            {"total_count": 0, "success_count": 0, "processed_count": 0, "summary": None},
            id="all-zero-no-summary",
        ),
        pytest.param(
            {"failure_count": -5, "summary": None},
            id="negative-failures",
        ),
        pytest.param(
            {
                "summary": {
                    "success_count": 3,
                    "failure_count": 0,
                    "failures": [{"identifier_index": 7, "error": "x"}],
                }
            },
            id="failure-outside-the-batch",
        ),
    ],
)
async def test_counts_that_do_not_cover_the_batch_are_unknown(fields: dict[str, Any]) -> None:
    """A completed job whose counts do not account for every identifier issues nobody for sure."""
    outcomes = await outcomes_for(lambda job_id, sent: completed(job_id, sent, **fields))
    assert statuses(outcomes) == ["unknown"] * 3
    assert all(o.error and "do not account" in o.error for o in outcomes)


async def test_another_jobs_answer_is_not_evidence() -> None:
    """A poll answered with another job's id (and failures) resolves UNKNOWN, not by its data."""
    failure = {"identifier_index": 0, "error": "User not found"}
    outcomes = await outcomes_for(
        lambda job_id, sent: completed(
            "job_999",
            sent,
            success_count=2,
            failure_count=1,
            summary={"success_count": 2, "failure_count": 1, "failures": [failure]},
        )
    )
    assert statuses(outcomes) == ["unknown"] * 3
    assert all(o.job_id == "job_1" for o in outcomes)
    assert outcomes[0].error is not None
    assert "job_999" in outcomes[0].error


@pytest.mark.parametrize("index", [1.9, True, "2"])
async def test_unreadable_failure_index_resolves_unknown_at_once(index: object) -> None:
    """A completed job whose summary cannot be read resolves UNKNOWN at once (no timeout needed)."""
    failure = {"identifier_index": index, "error": "User not found"}
    outcomes = await outcomes_for(
        lambda job_id, sent: completed(
            job_id,
            sent,
            success_count=2,
            failure_count=1,
            summary={"success_count": 2, "failure_count": 1, "failures": [failure]},
        ),
        job_timeout=None,
    )
    assert statuses(outcomes) == ["unknown"] * 3
    assert all(o.error and "could not be read" in o.error for o in outcomes)


async def test_unreadable_failed_state_is_not_a_job_failure() -> None:
    """A 'failed' job whose answer is unreadable is UNKNOWN, not a JobFailedError built on it."""
    outcomes = await outcomes_for(
        lambda job_id, sent: {"id": job_id, "state": "failed", "failure_count": "all"}
    )
    assert statuses(outcomes) == ["unknown"] * 3


async def test_recorded_unknown_answers_a_resubmission(tmp_path: Path) -> None:
    """With a journal, a resubmission of such a batch gets the recorded UNKNOWN, not a new issue."""
    journal = tmp_path / "j.db"
    answer = lambda job_id, sent: completed(job_id, sent, total_count=1)  # noqa: E731
    first = await outcomes_for(answer, journal=journal)
    again = await outcomes_for(answer, journal=journal)
    assert statuses(first) == statuses(again) == ["unknown"] * 3
