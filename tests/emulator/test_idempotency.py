"""X-Idempotency-Key: byte-identical replay, 422 on a different body, retention, scope."""

from __future__ import annotations

import orjson

from tests.emulator.conftest import ISSUE, Api, identifiers, issue_body
from thanx_async.testing import EmulatorState, ManualClock

KEY = "6f1c2b1e-8c7d-4e0b-9a51-3d2f0c9b7a10"


async def test_replay_is_byte_identical_and_creates_one_job(
    api: Api, clock: ManualClock, state: EmulatorState
) -> None:
    """The same key and body replays the original 202 byte for byte, even after the job moved on."""
    first = await api.issue(identifiers(5), key=KEY)
    clock.advance(60.0)
    assert (await api.get_job(first.job["id"])).job["state"] == "completed"
    again = await api.issue(identifiers(5), key=KEY)
    assert (again.status, again.raw) == (first.status, first.raw)
    assert again.job["state"] == "pending"
    assert len(state.jobs) == 1


async def test_same_json_in_different_bytes_replays(api: Api, state: EmulatorState) -> None:
    """A body re-serialised differently (spacing, key order) but equal as JSON still replays."""
    body = issue_body(identifiers(3))
    first = await api.request("POST", ISSUE, body=orjson.dumps(body), headers=_json_key(KEY))
    reordered = dict(reversed(body.items()))
    pretty = orjson.dumps(reordered, option=orjson.OPT_INDENT_2)
    again = await api.request("POST", ISSUE, body=pretty, headers=_json_key(KEY))
    assert again.raw == first.raw
    assert len(state.jobs) == 1


async def test_same_key_different_body_is_422(api: Api, state: EmulatorState) -> None:
    """Reusing a key with a different body gets 422 IDEMPOTENCY_KEY_REUSED and no new job."""
    await api.issue(identifiers(3), key=KEY)
    answer = await api.issue(identifiers(4), key=KEY)
    assert (answer.status, answer.code) == (422, "IDEMPOTENCY_KEY_REUSED")
    assert len(state.jobs) == 1


async def test_no_key_means_a_new_job_each_time(api: Api, state: EmulatorState) -> None:
    """Without a key, the same body twice makes two jobs."""
    await api.issue(identifiers(3))
    await api.issue(identifiers(3))
    assert len(state.jobs) == 2


async def test_keys_expire_after_retention(
    api: Api, clock: ManualClock, state: EmulatorState
) -> None:
    """After idempotency_retention the key is forgotten: the same request makes a new job."""
    state.idempotency_retention = 100.0
    first = await api.issue(identifiers(3), key=KEY)
    clock.advance(99.0)
    assert (await api.issue(identifiers(3), key=KEY)).raw == first.raw
    clock.advance(1.0)
    again = await api.issue(identifiers(3), key=KEY)
    assert again.job["id"] != first.job["id"]
    assert len(state.jobs) == 2
    assert (await api.issue(identifiers(9), key=KEY)).status == 422


async def test_keys_are_per_credential(api: Api, state: EmulatorState) -> None:
    """The same key from another credential is a different request."""
    state.add_credential("partner-2", "tok-2")
    await api.issue(identifiers(3), key=KEY)
    other = {"X-ClientId": "partner-2", "Authorization": "Bearer tok-2", **_json_key(KEY)}
    answer = await api.request("POST", ISSUE, json=issue_body(identifiers(4)), headers=other)
    assert answer.status == 202
    assert len(state.jobs) == 2


async def test_refusals_are_not_cached(api: Api, state: EmulatorState) -> None:
    """A 400 is not remembered: after fixing the cause, the same key and body succeed."""
    items = identifiers(3)
    state.server_rejected.add(("email", items[0]["value"]))
    assert (await api.issue(items, key=KEY)).status == 400
    state.server_rejected.clear()
    assert (await api.issue(items, key=KEY)).status == 202


async def test_replay_still_counts_against_the_rate_limit(api: Api, state: EmulatorState) -> None:
    """A replayed request is still a request: it is rate limited like any other."""
    state.rate_limit_per_second = 2
    await api.issue(key=KEY)
    assert (await api.issue(key=KEY)).status == 202
    assert (await api.issue(key=KEY)).status == 429


def _json_key(key: str) -> dict[str, str]:
    return {"Content-Type": "application/json", "X-Idempotency-Key": key}
