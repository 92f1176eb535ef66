"""The read-only /_emulator/... endpoints and the summary the standalone emulator prints."""

from __future__ import annotations

from typing import Any

from tests.emulator.conftest import Api, identifiers
from thanx_async.testing import EmulatorState, ManualClock
from thanx_async.testing._inspect import format_summary


async def get(api: Api, path: str, **params: str) -> Any:
    """GET an inspection endpoint with no API headers at all."""
    async with api.session.get(api.url + path, params=params) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def test_summary_counts_requests_jobs_and_rewards(
    api: Api, state: EmulatorState, clock: ManualClock
) -> None:
    """Requests by route and status, 429s, replays, jobs, rewards and double rewards add up."""
    state.rate_limit_per_second = 2
    people = identifiers(3)
    first = await api.issue(people, key="k-1")
    await api.issue(people, key="k-1")  # an idempotent replay: the same job back
    assert (await api.issue(people, key="k-2")).status == 429  # a 3rd request this second
    clock.advance(1.0)
    await api.issue(people, key="k-2")  # the same people again, new key: rewarded twice
    await api.request("GET", "/partner/scopes", headers={"Authorization": "Bearer wrong"})
    clock.advance(1.0)
    await api.revoke(first.job["id"])
    clock.advance(1.0)
    data = await get(api, "/_emulator/summary")
    assert data["requests"] == {
        "total": 6,
        "logged": True,
        "by_route": {"issue": {"202": 3, "429": 1}, "revoke": {"202": 1}, "scopes": {"401": 1}},
        "rate_limited": 1,
    }
    assert data["jobs"] == {"total": 2, "by_state": {"completed": 1, "revoked": 1}}
    assert data["idempotent_replays"] == 1
    assert data["rewards"] == {
        "issued": 6,
        "revoked": 3,
        "people": 3,
        "rewarded_more_than_once": 3,
    }
    text = format_summary(state)
    assert "Emulator summary: 6 requests" in text
    assert "(202: 3, 429: 1)" in text
    assert "answered 429           1" in text
    assert "3 people rewarded more than once" in text
    assert len(state.requests) == 6  # inspecting is not logged


async def test_requests_and_ledger_are_listed(
    api: Api, state: EmulatorState, clock: ManualClock
) -> None:
    """The request log (bodies on request, token redacted) and the ledger, with limits."""
    await api.issue(identifiers(2), key="k-1")
    await api.get_job("job_nope")
    clock.advance(1.0)
    log = await get(api, "/_emulator/requests")
    assert log["total"] == 2
    issue, poll = log["requests"]
    assert (issue["route"], issue["status"], issue["method"]) == ("issue", 202, "POST")
    assert issue["headers"]["Authorization"] == "Bearer ***"
    assert "body" not in issue
    assert issue["body_bytes"] > 0
    assert (poll["route"], poll["status"], poll["query"]["merchant_id"]) == (
        "get_job",
        404,
        "merchant_demo",
    )
    only = await get(api, "/_emulator/requests", route="issue", bodies="1", limit="1")
    assert only["total"] == 1
    assert "guest.0@example.com" in only["requests"][0]["body"]
    ledger = await get(api, "/_emulator/ledger")
    assert ledger["total"] == 2
    assert [(e["type"], e["value"]) for e in ledger["entries"]] == [
        ("email", "guest.0@example.com"),
        ("phone", "+14150000001"),
    ]
    assert (await get(api, "/_emulator/ledger", offset="1", limit="5"))["entries"][0][
        "type"
    ] == "phone"
    async with api.session.get(api.url + "/_emulator/ledger", params={"limit": "x"}) as bad:
        assert bad.status == 400
    async with api.session.post(api.url + "/_emulator/summary") as post:
        assert post.status == 404  # read-only: anything else is the API's "no route"
