"""ThanxClient against a mocked wire (aioresponses): headers, retries, errors, secrets."""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

import orjson
import pytest
from aioresponses import aioresponses
from yarl import URL

import thanx_async as ta
from tests.conftest import BASE, CLIENT_ID, FAST_RETRY, NO_LIMIT, TOKEN

ISSUE_URL = f"{BASE}/partner/campaigns/issue"
JOB = {"id": "job_1", "state": "pending", "total_count": 2}
ISSUE_ARGS: dict[str, Any] = {
    "merchant_id": "m1",
    "campaign_id": "c1",
    "variant_id": "v1",
    "identifiers": ["jane@example.com", "+14155551234"],
}


def job_body(**changes: Any) -> dict[str, Any]:
    return {"issuance_job": {**JOB, **changes}}


def calls(m: aioresponses, method: str, url: str) -> list[Any]:
    return list(m.requests.get((method, URL(url)), []))


@pytest.fixture
def mocked() -> Any:
    with aioresponses() as m:
        yield m


async def test_every_request_carries_the_five_headers(
    client: ta.ThanxClient, mocked: aioresponses
) -> None:
    """Each request sends Authorization, X-ClientId, Accept-Version, Content-Type, User-Agent."""
    mocked.get(f"{BASE}/partner/scopes", payload={"scopes": ["rewards.issue"]})
    assert await client.get_scopes() == ["rewards.issue"]
    (call,) = calls(mocked, "GET", f"{BASE}/partner/scopes")
    headers = call.kwargs["headers"]
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert headers["X-ClientId"] == CLIENT_ID
    assert headers["Accept-Version"] == "v4.0"
    assert headers["Content-Type"] == "application/json"
    assert re.fullmatch(r"thanx-async/\S+", headers["User-Agent"])


async def test_issue_sends_the_documented_body_and_a_uuid4_key(
    client: ta.ThanxClient, mocked: aioresponses
) -> None:
    """issue_rewards posts the four fields with normalised identifiers and a fresh UUID4 key."""
    mocked.post(ISSUE_URL, status=202, payload=job_body())
    job = await client.issue_rewards(**{**ISSUE_ARGS, "identifiers": [" Jane@Example.com"]})
    assert job.id == "job_1"
    assert job.state is ta.JobState.PENDING
    (call,) = calls(mocked, "POST", ISSUE_URL)
    assert orjson.loads(call.kwargs["data"]) == {
        "merchant_id": "m1",
        "campaign_id": "c1",
        "variant_id": "v1",
        "identifiers": [{"type": "email", "value": "jane@example.com"}],
    }
    assert uuid.UUID(call.kwargs["headers"]["X-Idempotency-Key"]).version == 4


@pytest.mark.parametrize("count", [0, 10_001])
async def test_issue_refuses_wrong_counts_before_any_request(
    client: ta.ThanxClient, mocked: aioresponses, count: int
) -> None:
    """0 or more than 10,000 identifiers is a ValueError and nothing is sent."""
    with pytest.raises(ValueError, match="10,000"):
        await client.issue_rewards(**{**ISSUE_ARGS, "identifiers": ["a@b.co"] * count})
    assert not mocked.requests


async def test_invalid_identifier_is_refused_before_any_request(
    client: ta.ThanxClient, mocked: aioresponses
) -> None:
    """An invalid identifier raises InvalidIdentifierError and nothing is sent."""
    with pytest.raises(ta.InvalidIdentifierError):
        await client.issue_rewards(**{**ISSUE_ARGS, "identifiers": ["a@b.co", "4155551234"]})
    assert not mocked.requests


async def test_a_400_is_sent_once(client: ta.ThanxClient, mocked: aioresponses) -> None:
    """A 400 is final: raised as BadRequestError after exactly one request."""
    mocked.post(
        ISSUE_URL, status=400, payload={"error": {"code": "BAD_REQUEST", "message": "nope"}}
    )
    with pytest.raises(ta.BadRequestError) as info:
        await client.issue_rewards(**ISSUE_ARGS)
    assert info.value.code == "BAD_REQUEST"
    assert len(calls(mocked, "POST", ISSUE_URL)) == 1


async def test_a_503_is_retried_with_identical_bytes_and_key(
    client: ta.ThanxClient, mocked: aioresponses
) -> None:
    """A 503 is retried; every attempt sends the same body bytes and idempotency key."""
    mocked.post(ISSUE_URL, status=503, body="busy")
    mocked.post(ISSUE_URL, status=502, body="busy")
    mocked.post(ISSUE_URL, status=202, payload=job_body())
    job = await client.issue_rewards(**ISSUE_ARGS)
    assert job.id == "job_1"
    attempts = calls(mocked, "POST", ISSUE_URL)
    assert len(attempts) == 3
    assert len({a.kwargs["data"] for a in attempts}) == 1
    assert len({a.kwargs["headers"]["X-Idempotency-Key"] for a in attempts}) == 1
    assert client.stats.retries == 2


async def test_given_key_is_used_as_is(client: ta.ThanxClient, mocked: aioresponses) -> None:
    """An explicit idempotency key is sent unchanged."""
    mocked.post(ISSUE_URL, status=202, payload=job_body())
    await client.issue_rewards(**ISSUE_ARGS, idempotency_key="my-key")
    (call,) = calls(mocked, "POST", ISSUE_URL)
    assert call.kwargs["headers"]["X-Idempotency-Key"] == "my-key"


async def test_retries_stop_after_max_attempts(
    client: ta.ThanxClient, mocked: aioresponses
) -> None:
    """A persistently failing server ends in ServerError after max_attempts requests."""
    mocked.post(
        ISSUE_URL, status=500, payload={"code": "GENERIC_ERROR", "message": "x"}, repeat=True
    )
    with pytest.raises(ta.ServerError):
        await client.issue_rewards(**ISSUE_ARGS)
    assert len(calls(mocked, "POST", ISSUE_URL)) == FAST_RETRY.max_attempts


async def test_429_is_retried_and_counted(client: ta.ThanxClient, mocked: aioresponses) -> None:
    """A 429 is retried and counted in the client's stats."""
    url = f"{BASE}/partner/scopes"
    mocked.get(url, status=429, payload={"error": {"code": "RATE_LIMITED", "message": "slow"}})
    mocked.get(url, payload={"scopes": []})
    assert await client.get_scopes() == []
    assert client.stats.rate_limited == 1


async def test_connection_errors_become_transport_error(
    client: ta.ThanxClient, mocked: aioresponses
) -> None:
    """Connection failures are retried, then raised as TransportError with the request context."""
    import aiohttp

    url = f"{BASE}/partner/scopes"
    mocked.get(url, exception=aiohttp.ClientConnectionError("refused"), repeat=True)
    with pytest.raises(ta.TransportError) as info:
        await client.get_scopes()
    assert info.value.method == "GET"
    assert info.value.path == "/partner/scopes"
    assert len(calls(mocked, "GET", url)) == FAST_RETRY.max_attempts


async def test_post_without_key_is_not_retried(
    client: ta.ThanxClient, mocked: aioresponses
) -> None:
    """A POST carrying no idempotency key (revoke) is never retried, even on 503."""
    url = f"{BASE}/partner/issuance_jobs/job_1/revoke"
    mocked.post(url, status=503, body="busy", repeat=True)
    with pytest.raises(ta.ServerError):
        await client.revoke_issuance_job("job_1", merchant_id="m1")
    assert len(calls(mocked, "POST", url)) == 1


async def test_malformed_success_body_is_a_typed_error(
    client: ta.ThanxClient, mocked: aioresponses
) -> None:
    """A 2xx body that is not a job raises MalformedResponseError (after retries for a GET)."""
    url = f"{BASE}/partner/issuance_jobs/job_1?merchant_id=m1"
    mocked.get(url, status=200, body='{"issuance_job": {"id"', repeat=True)
    with pytest.raises(ta.MalformedResponseError) as info:
        await client.get_issuance_job("job_1", merchant_id="m1")
    assert info.value.status == 200


async def test_token_provider_is_reasked_once_on_401(mocked: aioresponses) -> None:
    """With a provider, a 401 fetches a new token once and the request succeeds with it."""
    tokens = iter(["old-token", "new-token"])
    asked = 0

    async def provider() -> str:
        nonlocal asked
        asked += 1
        return next(tokens)

    url = f"{BASE}/partner/scopes"
    mocked.get(
        url, status=401, payload={"error": {"code": "AUTHENTICATION_GENERIC", "message": "x"}}
    )
    mocked.get(url, payload={"scopes": ["rewards.issue"]})
    async with ta.ThanxClient(
        client_id=CLIENT_ID, access_token=provider, base_url=BASE, rate_limit=NO_LIMIT
    ) as client:
        assert await client.get_scopes() == ["rewards.issue"]
    sent = [c.kwargs["headers"]["Authorization"] for c in calls(mocked, "GET", url)]
    assert sent == ["Bearer old-token", "Bearer new-token"]
    assert asked == 2


async def test_second_401_is_final(mocked: aioresponses) -> None:
    """A 401 with the fresh token too is final: the provider is asked again only once."""

    async def provider() -> str:
        return "tok"

    url = f"{BASE}/partner/scopes"
    mocked.get(url, status=401, payload={"error": {"code": "AUTHENTICATION_GENERIC"}}, repeat=True)
    async with ta.ThanxClient(
        client_id=CLIENT_ID, access_token=provider, base_url=BASE, rate_limit=NO_LIMIT
    ) as client:
        with pytest.raises(ta.AuthenticationError):
            await client.get_scopes()
    assert len(calls(mocked, "GET", url)) == 2


async def test_static_token_401_is_final(client: ta.ThanxClient, mocked: aioresponses) -> None:
    """With a static token a 401 raises AuthenticationError after one request."""
    url = f"{BASE}/partner/scopes"
    mocked.get(url, status=401, payload={"error": {"code": "AUTHENTICATION_GENERIC"}}, repeat=True)
    with pytest.raises(ta.AuthenticationError):
        await client.get_scopes()
    assert len(calls(mocked, "GET", url)) == 1


async def test_token_never_leaks(
    client: ta.ThanxClient, mocked: aioresponses, caplog: pytest.LogCaptureFixture
) -> None:
    """The token appears in no repr, log record or exception message."""
    caplog.set_level(logging.DEBUG, logger="thanx_async")
    mocked.post(ISSUE_URL, status=503, body="busy")
    mocked.post(ISSUE_URL, status=403, payload={"error": {"code": "FORBIDDEN", "message": "no"}})
    with pytest.raises(ta.PermissionDeniedError) as info:
        await client.issue_rewards(**ISSUE_ARGS)
    texts = [repr(client), str(info.value), repr(info.value), caplog.text, repr(vars(client))]
    assert caplog.records  # the requests were logged...
    assert all(TOKEN not in t for t in texts)  # ...without the token


async def test_revoke_accepts_202_and_200_without_body(
    client: ta.ThanxClient, mocked: aioresponses
) -> None:
    """Revoke returns the job from a 202, and fetches it after a bodiless 200."""
    url = f"{BASE}/partner/issuance_jobs/job_1/revoke"
    mocked.post(url, status=202, payload=job_body(state="revoking"))
    assert (
        await client.revoke_issuance_job("job_1", merchant_id="m1")
    ).state is ta.JobState.REVOKING
    mocked.post(url, status=200, body="")
    mocked.get(
        f"{BASE}/partner/issuance_jobs/job_1?merchant_id=m1", payload=job_body(state="revoking")
    )
    assert (
        await client.revoke_issuance_job("job_1", merchant_id="m1")
    ).state is ta.JobState.REVOKING
    (call, _) = calls(mocked, "POST", url)
    assert orjson.loads(call.kwargs["data"]) == {"merchant_id": "m1"}


async def test_revoke_from_wrong_state_is_unprocessable(
    client: ta.ThanxClient, mocked: aioresponses
) -> None:
    """A 422 on revoke is UnprocessableEntityError, not an idempotency conflict."""
    url = f"{BASE}/partner/issuance_jobs/job_1/revoke"
    mocked.post(url, status=422, payload={"error": {"code": "UNPROCESSABLE", "message": "pending"}})
    with pytest.raises(ta.UnprocessableEntityError):
        await client.revoke_issuance_job("job_1", merchant_id="m1")


async def test_issue_422_is_an_idempotency_conflict_and_not_retried(
    client: ta.ThanxClient, mocked: aioresponses
) -> None:
    """A 422 on a keyed issue is IdempotencyConflictError after exactly one request."""
    mocked.post(
        ISSUE_URL,
        status=422,
        payload={"error": {"code": "IDEMPOTENCY_KEY_REUSED", "message": "key reused"}},
    )
    with pytest.raises(ta.IdempotencyConflictError):
        await client.issue_rewards(**ISSUE_ARGS)
    assert len(calls(mocked, "POST", ISSUE_URL)) == 1


async def test_wait_for_job_polls_until_terminal(
    client: ta.ThanxClient, mocked: aioresponses
) -> None:
    """wait_for_job polls through pending/processing and returns the completed job."""
    url = f"{BASE}/partner/issuance_jobs/job_1?merchant_id=m1"
    mocked.get(url, payload=job_body(state="pending"))
    mocked.get(url, payload=job_body(state="processing", progress_percent=50))
    mocked.get(url, payload=job_body(state="completed", progress_percent=100))
    job = await client.wait_for_job("job_1", merchant_id="m1", initial_interval=0.001)
    assert job.state is ta.JobState.COMPLETED
    assert len(calls(mocked, "GET", url)) == 3


async def test_wait_for_job_timeout(client: ta.ThanxClient, mocked: aioresponses) -> None:
    """A job still running at the timeout raises JobTimeoutError carrying the job id."""
    url = f"{BASE}/partner/issuance_jobs/job_1?merchant_id=m1"
    mocked.get(url, payload=job_body(state="processing"), repeat=True)
    with pytest.raises(ta.JobTimeoutError) as info:
        await client.wait_for_job("job_1", merchant_id="m1", timeout=0.05, initial_interval=0.01)
    assert info.value.job_id == "job_1"


async def test_iter_campaigns_follows_pagination(
    client: ta.ThanxClient, mocked: aioresponses
) -> None:
    """iter_campaigns yields every campaign across pages."""
    url = f"{BASE}/partner/campaigns?merchant_id=m1&page={{}}&per_page=100"
    for page in (1, 2):
        mocked.get(
            url.format(page),
            payload={
                "campaigns": [{"id": f"c{page}a"}, {"id": f"c{page}b"}],
                "pagination": {"current_page": page, "per_page": 100, "total_page": 2},
            },
        )
    ids = [c.id async for c in client.iter_campaigns(merchant_id="m1")]
    assert ids == ["c1a", "c1b", "c2a", "c2b"]


async def test_get_campaign(client: ta.ThanxClient, mocked: aioresponses) -> None:
    """get_campaign returns the campaign with its variants."""
    mocked.get(
        f"{BASE}/partner/campaigns/c1",
        payload={"campaign": {"id": "c1", "variants": [{"id": "v1", "reward_template_id": "rt"}]}},
    )
    campaign = await client.get_campaign("c1")
    assert campaign.variants[0].reward_template_id == "rt"


def test_from_env_reads_variables_and_never_echoes_the_token() -> None:
    """from_env builds a client from the environment; a missing token is named, not shown."""
    client = ta.ThanxClient.from_env(
        {"THANX_CLIENT_ID": "cid", "THANX_ACCESS_TOKEN": TOKEN, "THANX_BASE_URL": BASE}
    )
    assert (client.client_id, client.base_url) == ("cid", BASE)
    with pytest.raises(ValueError, match="THANX_ACCESS_TOKEN") as info:
        ta.ThanxClient.from_env({"THANX_CLIENT_ID": "cid"})
    assert TOKEN not in str(info.value)
    assert ta.ThanxClient.from_env(
        {"THANX_CLIENT_ID": "c", "THANX_ACCESS_TOKEN": "t"}
    ).base_url == (ta.SANDBOX_URL)


async def test_unclosed_client_warns(mocked: aioresponses) -> None:
    """A client whose session was opened and never closed emits a ResourceWarning."""
    mocked.get(f"{BASE}/partner/scopes", payload={"scopes": []})
    client = ta.ThanxClient(client_id="c", access_token="t", base_url=BASE, rate_limit=NO_LIMIT)
    await client.get_scopes()
    session = client._http._session  # type: ignore[union-attr]
    with pytest.warns(ResourceWarning, match="never closed"):
        del client  # the last reference: __del__ runs here
    assert session is not None
    await session.close()


async def test_user_session_is_not_closed() -> None:
    """A session passed in by the user stays open after the client closes."""
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with ta.ThanxClient(client_id="c", access_token="t", base_url=BASE, session=session):
            pass
        assert not session.closed
