"""Unreadable 2xx answers and 422s on issue: re-sent safely, typed, and honest about their fate."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aioresponses import aioresponses
from yarl import URL

import thanx_async as ta
from tests.conftest import BASE, FAST_RETRY
from thanx_async.testing import (
    DEFAULT_ACCESS_TOKEN,
    DEFAULT_CAMPAIGN_ID,
    DEFAULT_CLIENT_ID,
    DEFAULT_MERCHANT_ID,
    DEFAULT_VARIANT_ID,
    ThanxEmulator,
)

ISSUE_URL = f"{BASE}/partner/campaigns/issue"
ISSUE_ARGS: dict[str, Any] = {
    "merchant_id": DEFAULT_MERCHANT_ID,
    "campaign_id": DEFAULT_CAMPAIGN_ID,
    "variant_id": DEFAULT_VARIANT_ID,
    "identifiers": ["jane@example.com", "+14155551234"],
}


@pytest.fixture
def mocked() -> Any:
    with aioresponses() as m:
        yield m


@pytest.fixture
async def emulated(thanx_emulator: ThanxEmulator) -> AsyncIterator[ta.ThanxClient]:
    """A client of the emulator that retries at once (FAST_RETRY)."""
    async with ta.ThanxClient(
        client_id=DEFAULT_CLIENT_ID,
        access_token=DEFAULT_ACCESS_TOKEN,
        base_url=thanx_emulator.url,
        retry=FAST_RETRY,
    ) as client:
        yield client


# --- item 7: an unreadable 2xx to the issue POST ---


async def test_unreadable_2xx_issue_is_resent_and_the_replay_answers(
    emulated: ta.ThanxClient, thanx_emulator: ThanxEmulator
) -> None:
    """A garbled 202 is re-sent with the same bytes and key; the replay gives the one job."""
    thanx_emulator.state.faults.add("issue", malformed="garbage", times=2)
    job = await emulated.issue_rewards(**ISSUE_ARGS, idempotency_key="k-7")
    posts = thanx_emulator.state.requests_for("issue")
    assert len(posts) == 3
    assert {p.body for p in posts} == {posts[0].body}
    assert {p.headers["X-Idempotency-Key"] for p in posts} == {"k-7"}
    assert list(thanx_emulator.state.jobs) == [job.id]


async def test_unreadable_2xx_issue_that_persists_says_the_batch_may_be_issued(
    emulated: ta.ThanxClient, thanx_emulator: ThanxEmulator
) -> None:
    """Still unreadable after every retry: MalformedResponseError saying re-sending is safe."""
    thanx_emulator.state.faults.add("issue", malformed="truncated", times=None)
    with pytest.raises(ta.MalformedResponseError) as info:
        await emulated.issue_rewards(**ISSUE_ARGS, idempotency_key="k-8")
    error = info.value
    assert error.may_have_succeeded is True
    assert error.status == 202
    assert "the batch may have been issued" in str(error)
    assert "re-sending the same batch with the same key is safe" in str(error)
    posts = thanx_emulator.state.requests_for("issue")
    assert len(posts) == emulated.retry.max_attempts
    (job_id,) = thanx_emulator.state.jobs  # the server did issue, exactly once
    # ...and the advice holds: the same batch with the same key gets that very job.
    thanx_emulator.state.faults.clear()
    again = await emulated.issue_rewards(**ISSUE_ARGS, idempotency_key="k-8")
    assert again.id == job_id
    assert list(thanx_emulator.state.jobs) == [job_id]


async def test_unreadable_answer_to_a_get_may_not_have_succeeded(
    client: ta.ThanxClient, mocked: aioresponses
) -> None:
    """A GET's unreadable 2xx is retried, then typed with may_have_succeeded False."""
    url = f"{BASE}/partner/scopes"
    mocked.get(url, status=200, body="{not json", repeat=True)
    with pytest.raises(ta.MalformedResponseError) as info:
        await client.get_scopes()
    assert info.value.may_have_succeeded is False
    assert "may have been processed" not in str(info.value)
    assert len(mocked.requests[("GET", URL(url))]) == FAST_RETRY.max_attempts


async def test_unreadable_answer_to_a_keyless_post_is_not_resent(
    client: ta.ThanxClient, mocked: aioresponses
) -> None:
    """A revoke (POST, no key) with an unreadable 2xx is sent once and may have succeeded."""
    url = f"{BASE}/partner/issuance_jobs/job_1/revoke"
    mocked.post(url, status=202, body="{garbage", repeat=True)
    with pytest.raises(ta.MalformedResponseError) as info:
        await client.revoke_issuance_job("job_1", merchant_id="m1")
    assert info.value.may_have_succeeded is True
    assert "may have been processed" in str(info.value)
    assert len(mocked.requests[("POST", URL(url))]) == 1


# --- item 13(d): which 422s on issue are idempotency conflicts ---


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"error": {"code": "IDEMPOTENCY_KEY_REUSED", "message": "key reused"}}, "conflict"),
        ({"code": "idempotency_conflict", "message": "key reused"}, "conflict"),
        ({"error": {"message": "key reused"}}, "conflict"),  # no code: the documented 422
        ("not json at all", "conflict"),
        ({"error": {"code": "CAMPAIGN_ENDED", "message": "campaign ended"}}, "unprocessable"),
        ({"error": {"code": "UNPROCESSABLE_ENTITY", "message": "nope"}}, "unprocessable"),
    ],
)
async def test_a_422_on_issue_is_a_conflict_only_when_its_code_allows(
    client: ta.ThanxClient, mocked: aioresponses, body: Any, expected: str
) -> None:
    """A 422 on issue is IdempotencyConflictError unless its code names something else."""
    payload = body if isinstance(body, str) else orjson.dumps(body).decode()
    mocked.post(ISSUE_URL, status=422, body=payload, repeat=True)
    with pytest.raises(ta.APIError) as info:
        await client.issue_rewards(**ISSUE_ARGS)
    if expected == "conflict":
        assert type(info.value) is ta.IdempotencyConflictError
    else:
        assert type(info.value) is ta.UnprocessableEntityError
    assert len(mocked.requests[("POST", URL(ISSUE_URL))]) == 1  # never retried


async def test_the_emulators_key_reuse_is_a_conflict(
    emulated: ta.ThanxClient,
) -> None:
    """The same key with a different body, against the emulator, is IdempotencyConflictError."""
    await emulated.issue_rewards(**ISSUE_ARGS, idempotency_key="k-9")
    other = {**ISSUE_ARGS, "identifiers": ["someone.else@example.com"]}
    with pytest.raises(ta.IdempotencyConflictError):
        await emulated.issue_rewards(**other, idempotency_key="k-9")
