"""Scripted faults: delay, status, dropped connections (before/after commit), malformed bodies."""

from __future__ import annotations

import time

import aiohttp
import orjson
import pytest

from tests.emulator.conftest import Api, identifiers
from thanx_async.testing import EmulatorState, ManualClock

KEY = "1b4e28ba-2fa1-41d2-883f-0016d3cca427"


async def test_delay_sleeps_before_handling(api: Api, state: EmulatorState) -> None:
    """delay= holds the answer back for that long (real time), then answers normally."""
    state.faults.add("scopes", delay=0.2)
    started = time.perf_counter()
    answer = await api.request("GET", "/partner/scopes")
    assert time.perf_counter() - started >= 0.2
    assert answer.status == 200
    assert state.requests[-1].fault == "delay"
    assert (await api.request("GET", "/partner/scopes")).status == 200
    assert state.requests[-1].fault is None


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (500, "GENERIC_ERROR"),
        (503, "GENERIC_ERROR"),
        (429, "RATE_LIMITED"),
        (404, "RESOURCE_NOT_FOUND"),
    ],
)
async def test_status_answers_without_handling(
    api: Api, state: EmulatorState, status: int, code: str
) -> None:
    """status= answers that status with the error envelope; nothing is created."""
    state.faults.add("issue", status=status)
    answer = await api.issue(key=KEY)
    assert (answer.status, answer.code) == (status, code)
    assert not state.jobs
    assert (await api.issue(key=KEY)).status == 202


async def test_times_counts_down_and_none_is_forever(api: Api, state: EmulatorState) -> None:
    """times=2 hits two requests; times=None hits every one until clear()."""
    state.faults.add("scopes", status=502, times=2)
    statuses = [(await api.request("GET", "/partner/scopes")).status for _ in range(3)]
    assert statuses == [502, 502, 200]
    assert state.faults.pending == []
    state.faults.add("scopes", status=504, times=None)
    statuses = [(await api.request("GET", "/partner/scopes")).status for _ in range(4)]
    assert statuses == [504] * 4
    state.faults.clear()
    assert (await api.request("GET", "/partner/scopes")).status == 200


async def test_faults_are_per_route(api: Api, state: EmulatorState) -> None:
    """A fault for one route leaves the others alone, and is used in order."""
    state.faults.add("get_campaign", status=500)
    state.faults.add("get_campaign", status=503)
    assert (await api.request("GET", "/partner/scopes")).status == 200
    assert (await api.request("GET", "/partner/campaigns/camp_welcome")).status == 500
    assert (await api.request("GET", "/partner/campaigns/camp_welcome")).status == 503


async def test_drop_before_creates_nothing(api: Api, state: EmulatorState) -> None:
    """drop='before' closes the connection unanswered and unhandled: no job."""
    state.faults.add("issue", drop="before")
    with pytest.raises(aiohttp.ClientConnectionError):
        await api.issue(key=KEY)
    assert not state.jobs
    logged = state.requests[-1]
    assert (logged.route, logged.status, logged.fault) == ("issue", 0, "drop_before")
    assert (await api.issue(key=KEY)).status == 202


async def test_drop_after_commits_and_a_retry_gets_the_same_job(
    api: Api, state: EmulatorState, clock: ManualClock
) -> None:
    """drop='after' commits then hangs up; a same-key retry gets that job; everyone issued once."""
    items = identifiers(50)
    state.faults.add("issue", drop="after")
    with pytest.raises(aiohttp.ClientConnectionError):
        await api.issue(items, key=KEY)
    assert len(state.jobs) == 1
    committed = next(iter(state.jobs))
    logged = state.requests[-1]
    assert (logged.status, logged.fault) == (202, "drop_after")

    retry = await api.issue(items, key=KEY)
    assert (retry.status, retry.job["id"]) == (202, committed)
    assert len(state.jobs) == 1
    clock.advance(10.0)
    counts = state.issuance_counts()
    assert len(counts) == 50
    assert set(counts.values()) == {1}


async def test_drop_after_on_revoke_still_revokes(
    api: Api, state: EmulatorState, clock: ManualClock
) -> None:
    """drop='after' on revoke applies the revoke even though nobody hears about it."""
    job_id = (await api.issue()).job["id"]
    clock.advance(5.0)
    state.faults.add("revoke", drop="after")
    with pytest.raises(aiohttp.ClientConnectionError):
        await api.revoke(job_id)
    assert (await api.get_job(job_id)).job["state"] == "revoking"


async def test_truncated_body_after_handling(api: Api, state: EmulatorState) -> None:
    """malformed='truncated' commits the job, then sends its 202 with half a JSON body."""
    state.faults.add("issue", malformed="truncated")
    answer = await api.issue(key=KEY)
    assert answer.status == 202
    assert answer.headers["Content-Type"].startswith("application/json")
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(answer.raw)
    assert len(state.jobs) == 1
    replay = await api.issue(key=KEY)
    assert replay.raw.startswith(answer.raw)
    assert replay.job["id"] == next(iter(state.jobs))


async def test_garbage_body_after_handling(api: Api, state: EmulatorState) -> None:
    """malformed='garbage' answers the real status with a body that is not JSON at all."""
    job_id = (await api.issue()).job["id"]
    state.faults.add("get_job", malformed="garbage")
    answer = await api.get_job(job_id)
    assert answer.status == 200
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(answer.raw)
    assert state.requests[-1].fault == "garbage"


async def test_delay_combines_with_status(api: Api, state: EmulatorState) -> None:
    """delay= can precede another fault."""
    state.faults.add("scopes", delay=0.05, status=503)
    started = time.perf_counter()
    assert (await api.request("GET", "/partner/scopes")).status == 503
    assert time.perf_counter() - started >= 0.05


@pytest.mark.parametrize(
    "kwargs",
    [
        {"route": "nope", "status": 500},
        {"route": "issue"},
        {"route": "issue", "status": 500, "drop": "after"},
        {"route": "issue", "status": 200},
        {"route": "issue", "drop": "sideways"},
        {"route": "issue", "malformed": "wobbly"},
        {"route": "issue", "delay": -1.0},
        {"route": "issue", "status": 500, "times": 0},
    ],
)
def test_impossible_faults_are_refused(state: EmulatorState, kwargs: dict[str, object]) -> None:
    """faults.add refuses unknown routes, empty or conflicting faults and bad values."""
    with pytest.raises(ValueError):
        state.faults.add(**kwargs)  # type: ignore[arg-type]
