"""The job lifecycle on a hand-driven clock: progress, summary, failure, revoke."""

from __future__ import annotations

from datetime import datetime

import pytest

from tests.emulator.conftest import Api, identifiers
from thanx_async.testing import OTHER_MERCHANT_ID, EmulatorState, ManualClock


def _seconds(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


@pytest.fixture(autouse=True)
def _timing(state: EmulatorState) -> None:
    """1 s to start, 1,000 identifiers per second: a 10,000 batch takes 10 s."""
    state.start_delay = 1.0
    state.speed = 1_000.0


async def test_pending_then_processing_then_completed(api: Api, clock: ManualClock) -> None:
    """A job is pending, then processing with growing progress, then completed at 100%."""
    job_id = (await api.issue(identifiers(10_000))).job["id"]
    clock.advance(0.5)
    assert (await api.get_job(job_id)).job["state"] == "pending"

    clock.advance(0.5 + 2.5)  # 2.5 s into processing
    job = (await api.get_job(job_id)).job
    assert job["state"] == "processing"
    assert (job["processed_count"], job["progress_percent"]) == (2_500, 25)
    assert job["success_count"] + job["failure_count"] == 2_500
    assert job["started_at"] is not None
    assert job["completed_at"] is None
    assert "summary" not in job

    clock.advance(7.5)
    job = (await api.get_job(job_id)).job
    assert job["state"] == "completed"
    assert (job["processed_count"], job["progress_percent"]) == (10_000, 100)
    assert job["summary"] == {"success_count": 10_000, "failure_count": 0, "failures": []}
    assert _seconds(job["started_at"]) - _seconds(job["created_at"]) == pytest.approx(
        1.0, abs=0.002
    )
    assert _seconds(job["completed_at"]) - _seconds(job["started_at"]) == pytest.approx(
        10.0, abs=0.002
    )


async def test_not_found_users_are_listed_by_index(api: Api, clock: ManualClock) -> None:
    """By default unknown.* emails and phones ending 0000 land in summary.failures, by index."""
    items = identifiers(6)
    items[1] = {"type": "email", "value": "Unknown.42@example.com"}
    items[4] = {"type": "phone", "value": "+14155550000"}
    job_id = (await api.issue(items)).job["id"]
    clock.advance(2.0)
    job = (await api.get_job(job_id)).job
    assert (job["success_count"], job["failure_count"]) == (4, 2)
    assert job["summary"] == {
        "success_count": 4,
        "failure_count": 2,
        "failures": [
            {"identifier_index": 1, "identifier_type": "email", "error": "User not found"},
            {"identifier_index": 4, "identifier_type": "phone", "error": "User not found"},
        ],
    }


async def test_progress_counts_failures_processed_so_far(
    api: Api, clock: ManualClock, state: EmulatorState
) -> None:
    """While processing, failure_count only counts failures among the processed identifiers."""
    items = identifiers(2_000)
    state.unknown_users.update({("email", items[10]["value"]), ("phone", items[1_501]["value"])})
    job_id = (await api.issue(items)).job["id"]
    clock.advance(1.0 + 1.0)  # 1,000 processed
    job = (await api.get_job(job_id)).job
    assert (job["processed_count"], job["success_count"], job["failure_count"]) == (1_000, 999, 1)
    clock.advance(1.0)
    job = (await api.get_job(job_id)).job
    assert (job["state"], job["success_count"], job["failure_count"]) == ("completed", 1_998, 2)


async def test_custom_not_found_predicate_replaces_the_rule(
    api: Api, clock: ManualClock, state: EmulatorState
) -> None:
    """not_found= replaces the default rule; unknown_users still applies."""
    state.not_found = lambda kind, value: kind == "phone"
    items = [
        {"type": "email", "value": "unknown@example.com"},
        {"type": "phone", "value": "+14155551234"},
    ]
    job_id = (await api.issue(items)).job["id"]
    clock.advance(2.0)
    failures = (await api.get_job(job_id)).job["summary"]["failures"]
    assert [failure["identifier_index"] for failure in failures] == [1]


async def test_fail_next_jobs_ends_failed_without_summary(
    api: Api, clock: ManualClock, state: EmulatorState
) -> None:
    """fail_next_jobs(1): the next job ends failed (no summary, nothing issued), the next not."""
    state.fail_next_jobs(1)
    failed_id = (await api.issue(identifiers(3_000))).job["id"]
    ok_id = (await api.issue(identifiers(3, start=3_000))).job["id"]
    clock.advance(1.5)
    assert (await api.get_job(failed_id)).job["state"] == "processing"
    clock.advance(5.0)
    failed = (await api.get_job(failed_id)).job
    assert failed["state"] == "failed"
    assert "summary" not in failed
    assert (failed["success_count"], failed["failure_count"]) == (0, 3_000)
    assert failed["completed_at"] is not None
    assert (await api.get_job(ok_id)).job["state"] == "completed"
    assert {entry.job_id for entry in state.ledger()} == {ok_id}


async def test_fail_job_on_a_running_job(
    api: Api, clock: ManualClock, state: EmulatorState
) -> None:
    """fail_job ends an unfinished job failed, at once if asked; a finished job cannot be failed."""
    later = (await api.issue(identifiers(2))).job["id"]
    now = (await api.issue(identifiers(2, start=2))).job["id"]
    state.fail_job(later)
    state.fail_job(now, immediately=True)
    job = (await api.get_job(now)).job
    assert (job["state"], job["started_at"]) == ("failed", None)
    assert (await api.get_job(later)).job["state"] == "pending"
    clock.advance(5.0)
    assert (await api.get_job(later)).job["state"] == "failed"
    with pytest.raises(ValueError, match="already finished"):
        state.fail_job(later)


async def test_revoke_goes_revoking_then_revoked(
    api: Api, clock: ManualClock, state: EmulatorState
) -> None:
    """Revoke of a completed job answers 202 revoking, becomes revoked, and flags the ledger."""
    state.revoke_delay = 2.0
    job_id = (await api.issue(identifiers(2))).job["id"]
    clock.advance(2.0)
    answer = await api.revoke(job_id)
    assert (answer.status, answer.job["state"]) == (202, "revoking")
    assert "summary" in answer.job
    assert not any(entry.revoked for entry in state.ledger())
    clock.advance(1.0)
    assert (await api.get_job(job_id)).job["state"] == "revoking"
    clock.advance(1.0)
    assert (await api.get_job(job_id)).job["state"] == "revoked"
    assert [entry.revoked for entry in state.ledger()] == [True, True]
    assert state.issued_count("email", "guest.0@example.com", include_revoked=False) == 0
    assert state.issued_count("email", "guest.0@example.com") == 1


async def test_revoke_of_failed_job_is_allowed(
    api: Api, clock: ManualClock, state: EmulatorState
) -> None:
    """A failed job can be revoked too."""
    state.fail_next_jobs(1)
    job_id = (await api.issue()).job["id"]
    clock.advance(3.0)
    assert (await api.revoke(job_id)).status == 202


@pytest.mark.parametrize("wait", [0.0, 1.5])
async def test_revoke_of_unfinished_job_is_422(api: Api, clock: ManualClock, wait: float) -> None:
    """Pending and processing jobs cannot be revoked: 422."""
    job_id = (await api.issue(identifiers(10_000))).job["id"]
    clock.advance(wait)
    answer = await api.revoke(job_id)
    assert (answer.status, answer.code) == (422, "UNPROCESSABLE_ENTITY")


async def test_revoke_twice_is_422(api: Api, clock: ManualClock) -> None:
    """A revoking or revoked job cannot be revoked again: 422."""
    job_id = (await api.issue()).job["id"]
    clock.advance(2.0)
    assert (await api.revoke(job_id)).status == 202
    assert (await api.revoke(job_id)).status == 422
    clock.advance(10.0)
    assert (await api.revoke(job_id)).status == 422


async def test_revoke_needs_merchant_id(api: Api, clock: ManualClock) -> None:
    """Revoke without merchant_id is 400; with another merchant's id it is 404."""
    job_id = (await api.issue()).job["id"]
    clock.advance(2.0)
    path = f"/partner/issuance_jobs/{job_id}/revoke"
    assert (await api.request("POST", path, json={})).status == 400
    assert (await api.request("POST", path, json=["x"])).status == 400
    assert (await api.revoke(job_id, merchant_id=OTHER_MERCHANT_ID)).status == 404


async def test_get_job_needs_merchant_id(api: Api) -> None:
    """GET issuance job without merchant_id is 400 BAD_REQUEST."""
    job_id = (await api.issue()).job["id"]
    answer = await api.request("GET", f"/partner/issuance_jobs/{job_id}")
    assert (answer.status, answer.code) == (400, "BAD_REQUEST")


async def test_unknown_job_is_404(api: Api) -> None:
    """An unknown job id is 404 RESOURCE_NOT_FOUND, for get and revoke."""
    answer = await api.get_job("job_0000")
    assert (answer.status, answer.code) == (404, "RESOURCE_NOT_FOUND")
    assert (await api.revoke("job_0000")).status == 404


async def test_job_of_another_merchant_is_404(api: Api) -> None:
    """A job is only visible under the merchant it was issued for."""
    job_id = (await api.issue()).job["id"]
    assert (await api.get_job(job_id, merchant_id=OTHER_MERCHANT_ID)).status == 404


async def test_infinite_speed_and_no_delay_complete_at_once(api: Api, state: EmulatorState) -> None:
    """start_delay=0 and speed=inf make a job complete as soon as it is read."""
    state.start_delay = 0.0
    state.speed = float("inf")
    job_id = (await api.issue()).job["id"]
    assert (await api.get_job(job_id)).job["state"] == "completed"
