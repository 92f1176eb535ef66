"""The request log (with redaction) and the ledger of issued rewards."""

from __future__ import annotations

from tests.emulator.conftest import Api, identifiers
from thanx_async.testing import (
    DEFAULT_ACCESS_TOKEN,
    DEFAULT_CAMPAIGN_ID,
    DEFAULT_MERCHANT_ID,
    DEFAULT_VARIANT_ID,
    EmulatorState,
    LedgerEntry,
    ManualClock,
)


async def test_every_request_is_logged_with_its_final_status(
    api: Api, state: EmulatorState, clock: ManualClock
) -> None:
    """Accepted and refused requests alike are logged: method, path, query, body, status, time."""
    await api.issue(identifiers(1), key="k-1")
    clock.advance(1.0)
    await api.request("GET", "/partner/scopes", headers={"Authorization": "Bearer wrong"})
    await api.get_job("job_nope")
    issue, refused, poll = state.requests
    assert (issue.method, issue.path, issue.route, issue.status) == (
        "POST",
        "/partner/campaigns/issue",
        "issue",
        202,
    )
    assert b'"guest.0@example.com"' in issue.body
    assert issue.headers["X-Idempotency-Key"] == "k-1"
    assert issue.at == 1000.0
    assert (refused.status, refused.at) == (401, 1001.0)
    assert (poll.route, poll.status, poll.query) == (
        "get_job",
        404,
        {"merchant_id": DEFAULT_MERCHANT_ID},
    )
    assert state.requests_for("get_job") == [poll]


async def test_authorization_is_redacted(api: Api, state: EmulatorState) -> None:
    """The log keeps 'Bearer ***' instead of any token, right or wrong, and repr shows no body."""
    await api.request("GET", "/partner/scopes")
    await api.request("GET", "/partner/scopes", headers={"Authorization": "Bearer leaked-123"})
    for logged in state.requests:
        assert logged.headers["Authorization"] == "Bearer ***"
        assert DEFAULT_ACCESS_TOKEN not in repr(logged)
        assert "leaked-123" not in repr(logged)


async def test_logging_can_be_switched_off(api: Api, state: EmulatorState) -> None:
    """log_requests=False keeps nothing (for very long runs)."""
    state.log_requests = False
    await api.request("GET", "/partner/scopes")
    assert state.requests == []


async def test_ledger_has_successes_of_completed_jobs_only(
    api: Api, state: EmulatorState, clock: ManualClock
) -> None:
    """Only completed jobs appear in the ledger, minus their not-found identifiers."""
    items = [
        {"type": "email", "value": "jane@example.com"},
        {"type": "email", "value": "unknown.1@example.com"},
        {"type": "phone", "value": "+14155551234"},
    ]
    job_id = (await api.issue(items)).job["id"]
    assert state.ledger() == []
    clock.advance(5.0)
    assert state.ledger() == [
        LedgerEntry(
            job_id=job_id,
            merchant_id=DEFAULT_MERCHANT_ID,
            campaign_id=DEFAULT_CAMPAIGN_ID,
            variant_id=DEFAULT_VARIANT_ID,
            identifier_type="email",
            identifier_value="jane@example.com",
            identifier_index=0,
            revoked=False,
        ),
        LedgerEntry(
            job_id=job_id,
            merchant_id=DEFAULT_MERCHANT_ID,
            campaign_id=DEFAULT_CAMPAIGN_ID,
            variant_id=DEFAULT_VARIANT_ID,
            identifier_type="phone",
            identifier_value="+14155551234",
            identifier_index=2,
            revoked=False,
        ),
    ]
    assert state.issued_count("email", "unknown.1@example.com") == 0


async def test_counters_reveal_a_double_issue(
    api: Api, state: EmulatorState, clock: ManualClock
) -> None:
    """issuance_counts and issued_count show a person rewarded twice, per campaign and variant."""
    jane = {"type": "email", "value": "jane@example.com"}
    await api.issue([jane])
    await api.issue([jane])
    await api.issue([jane], variant_id="var_welcome_discount")
    clock.advance(5.0)
    key = (
        DEFAULT_MERCHANT_ID,
        DEFAULT_CAMPAIGN_ID,
        DEFAULT_VARIANT_ID,
        "email",
        "jane@example.com",
    )
    counts = state.issuance_counts()
    assert counts[key] == 2
    assert sorted(counts.values()) == [1, 2]
    assert state.issued_count("email", "jane@example.com") == 3
    assert state.issued_count("email", "jane@example.com", variant_id=DEFAULT_VARIANT_ID) == 2
    assert state.issued_count("email", "jane@example.com", campaign_id="camp_birthday") == 0


async def test_job_json_helper_matches_the_wire(api: Api, state: EmulatorState) -> None:
    """state.job_json shows the same object as GET issuance_jobs."""
    job_id = (await api.issue()).job["id"]
    assert state.job_json(job_id) == (await api.get_job(job_id)).job
