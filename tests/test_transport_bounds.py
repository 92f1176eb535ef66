"""Every call is bounded: Retry-After capped, the deadline covers waiting for budget."""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aioresponses import aioresponses

import thanx_async as ta
from tests.conftest import BASE, CLIENT_ID, NO_LIMIT, TOKEN
from thanx_async._transport._ratelimit import SlidingLog
from thanx_async._transport._requester import parse_retry_after

SCOPES = f"{BASE}/partner/scopes"
ISSUE = f"{BASE}/partner/campaigns/issue"
JOB = {"issuance_job": {"id": "job_1", "state": "pending"}}
ISSUE_ARGS: dict[str, Any] = {
    "merchant_id": "m1",
    "campaign_id": "c1",
    "variant_id": "v1",
    "identifiers": ["jane@example.com"],
}
#: Long enough that a hang shows up as a failure, short enough to keep CI fast.
NEVER = 10.0


def make_client(
    *, deadline: float | None, rate_limit: ta.RateLimit = NO_LIMIT, max_attempts: int = 4
) -> ta.ThanxClient:
    return ta.ThanxClient(
        client_id=CLIENT_ID,
        access_token=TOKEN,
        base_url=BASE,
        retry=ta.RetryPolicy(
            max_attempts=max_attempts, initial_backoff=0.0, max_backoff=0.0, deadline=deadline
        ),
        rate_limit=rate_limit,
    )


@pytest.fixture
def mocked() -> Any:
    with aioresponses() as m:
        yield m


@pytest.fixture
async def bounded() -> AsyncIterator[ta.ThanxClient]:
    """A client whose calls have a 0.3 s deadline (and the default 900 s long window)."""
    async with make_client(deadline=0.3) as client:
        yield client


def rate_limited(retry_after: str) -> dict[str, Any]:
    return {
        "status": 429,
        "headers": {"Retry-After": retry_after},
        "payload": {"error": {"code": "RATE_LIMITED", "message": "slow down"}},
    }


# --- Retry-After parsing and the limiter's pause ---


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("86400", 900.0),
        ("inf", 900.0),
        ("1e400", 900.0),
        ("Infinity", 900.0),
        ("-5", 0.0),
        ("nan", None),
        ("2.5", 2.5),
        ("Fri, 31 Dec 2099 23:59:59 GMT", 900.0),
        ("Thu, 01 Jan 1970 00:00:00 GMT", 0.0),
        ("soon", None),
        ("", None),
    ],
)
def test_retry_after_is_finite_and_capped(header: str, expected: float | None) -> None:
    """Any Retry-After parses to None or a finite wait within [0, cap]; absurd ones give the cap."""
    assert parse_retry_after(header, 900.0) == expected


def test_retry_after_date_in_the_near_future_is_its_distance() -> None:
    """An HTTP-date Retry-After a minute ahead means about 60 s."""
    soon = email.utils.formatdate(time.time() + 60, usegmt=True)
    wait = parse_retry_after(soon, 900.0)
    assert wait is not None
    assert 55 <= wait <= 61


@pytest.mark.parametrize("retry_after", [86400.0, float("inf"), 1e300, float("nan"), -3.0])
def test_penalize_never_pauses_longer_than_the_long_window(retry_after: float) -> None:
    """SlidingLog.penalize caps a Retry-After at the long window, and ignores NaN or negatives."""
    log = SlidingLog(ta.RateLimit(per_second=5, per_window=100, window=60.0))
    log.penalize(1000.0, retry_after)
    ready = log.ready_at(1000.0)
    assert ready is not None
    assert 1000.0 < ready <= 1060.0


# --- the scenario of the issue: one 429 with Retry-After: 86400 ---


async def test_429_with_a_day_long_retry_after_never_hangs_later_calls(
    bounded: ta.ThanxClient, mocked: aioresponses
) -> None:
    """After a 429 with Retry-After 86400, calls end within their deadline with typed errors."""
    mocked.get(SCOPES, **rate_limited("86400"))
    mocked.get(SCOPES, payload={"scopes": []}, repeat=True)
    async with asyncio.timeout(NEVER):
        with pytest.raises(ta.RateLimitError) as first:
            await bounded.get_scopes()
        assert first.value.retry_after == 900.0  # capped at the long window
        started = time.monotonic()
        with pytest.raises(ta.TransportError) as second:
            await bounded.get_scopes()
    elapsed = time.monotonic() - started
    assert 0.2 <= elapsed < 2.0
    assert "rate budget" in str(second.value)
    assert "nothing was sent" in str(second.value)
    assert second.value.may_have_succeeded is False
    assert len(mocked.requests[("GET", first_url(mocked))]) == 1  # the second was never sent
    stats = bounded.limiter.stats()  # type: ignore[attr-defined]
    assert (stats.queued, stats.in_flight) == (0, 0)


def first_url(mocked: aioresponses) -> Any:
    (key,) = mocked.requests
    return key[1]


async def test_issue_waiting_for_budget_past_its_deadline_fails_unsent(
    bounded: ta.ThanxClient, mocked: aioresponses
) -> None:
    """An issue POST stuck behind a paused limiter fails at its deadline; nothing was sent."""
    mocked.get(SCOPES, **rate_limited("1e400"))
    with pytest.raises(ta.RateLimitError):
        await bounded.get_scopes()
    async with asyncio.timeout(NEVER):
        with pytest.raises(ta.TransportError, match="nothing was sent") as info:
            await bounded.issue_rewards(**ISSUE_ARGS)
    assert info.value.may_have_succeeded is False
    assert info.value.method == "POST"
    assert ("POST", first_url(mocked)) not in mocked.requests


@pytest.mark.parametrize("retry_after", ["86400", "inf", "Fri, 31 Dec 2099 23:59:59 GMT"])
async def test_retry_after_beyond_the_window_is_honoured_only_up_to_it(
    mocked: aioresponses, retry_after: str
) -> None:
    """With no deadline, an absurd Retry-After costs one long window (here 0.3 s), then succeeds."""
    limit = ta.RateLimit(per_second=100, per_window=1000, window=0.3, second=0.01)
    mocked.get(SCOPES, **rate_limited(retry_after))
    mocked.get(SCOPES, payload={"scopes": ["rewards.issue"]})
    async with make_client(deadline=None, rate_limit=limit) as client:
        started = time.monotonic()
        async with asyncio.timeout(NEVER):
            assert await client.get_scopes() == ["rewards.issue"]
    assert 0.25 <= time.monotonic() - started < 3.0


async def test_a_retry_that_cannot_get_budget_says_what_was_sent(mocked: aioresponses) -> None:
    """A retry stuck waiting for budget fails at the deadline; the sent attempt keeps its fate."""
    # One request per 10 s: the retry of the 503 waits far past the 0.3 s deadline.
    limit = ta.RateLimit(per_second=1, per_window=1000, second=10.0)
    mocked.post(ISSUE, status=503, body="busy")
    mocked.post(ISSUE, status=202, payload=JOB)
    async with make_client(deadline=0.3, rate_limit=limit) as client:
        async with asyncio.timeout(NEVER):
            with pytest.raises(ta.TransportError) as info:
                await client.issue_rewards(**ISSUE_ARGS)
    message = str(info.value)
    assert "rate budget" in message
    assert "retry 1 was not sent" in message
    assert "503" in message
    assert info.value.may_have_succeeded is True  # the 503'd POST may have been processed


async def test_a_token_provider_that_hangs_is_bounded_by_the_deadline(
    mocked: aioresponses,
) -> None:
    """A token provider that never answers fails the call at its deadline, nothing sent."""
    never = asyncio.Event()

    async def provider() -> str:
        await never.wait()
        return TOKEN

    async with ta.ThanxClient(
        client_id=CLIENT_ID,
        access_token=provider,
        base_url=BASE,
        rate_limit=NO_LIMIT,
        retry=ta.RetryPolicy(deadline=0.2),
    ) as client:
        async with asyncio.timeout(NEVER):
            with pytest.raises(ta.TransportError, match="token") as info:
                await client.get_scopes()
    assert "nothing was sent" in str(info.value)
    assert not mocked.requests


async def test_limiter_stays_consistent_when_deadlines_cancel_its_waiters(
    mocked: aioresponses,
) -> None:
    """Waiters (foreground and polls) cut off by their deadline leave no trace in the limiter."""
    limit = ta.RateLimit(per_second=100, per_window=1000, window=1.0, second=0.01)
    mocked.get(SCOPES, **rate_limited("0.6"))
    mocked.get(SCOPES, payload={"scopes": []}, repeat=True)
    job_url = f"{BASE}/partner/issuance_jobs/job_1?merchant_id=m1"
    mocked.get(job_url, payload=JOB, repeat=True)
    async with make_client(deadline=0.15, rate_limit=limit, max_attempts=1) as client:
        with pytest.raises(ta.RateLimitError):
            await client.get_scopes()  # pauses the limiter for 0.6 s
        calls = [client.get_scopes() for _ in range(10)]
        polls = [
            client.get_issuance_job("job_1", merchant_id="m1", background=True) for _ in range(10)
        ]
        async with asyncio.timeout(NEVER):
            results = await asyncio.gather(*calls, *polls, return_exceptions=True)
        assert all(isinstance(r, ta.TransportError) for r in results), results
        stats = client.limiter.stats()  # type: ignore[attr-defined]
        assert (stats.queued, stats.in_flight) == (0, 0)
        await asyncio.sleep(0.6)  # the pause ends: the budget works again at once
        async with asyncio.timeout(NEVER):
            started = time.monotonic()
            await asyncio.gather(*(client.get_scopes() for _ in range(5)))
            await client.get_issuance_job("job_1", merchant_id="m1", background=True)
        assert time.monotonic() - started < 0.15
