"""Both rate-limit windows, per credential, with refusals left uncounted."""

from __future__ import annotations

import pytest

from tests.emulator.conftest import Api
from thanx_async.testing import (
    READONLY_ACCESS_TOKEN,
    READONLY_CLIENT_ID,
    EmulatorState,
    ManualClock,
)
from thanx_async.testing._limits import SlidingLog

SCOPES = "/partner/scopes"


@pytest.fixture(autouse=True)
def _defaults(state: EmulatorState) -> None:
    state.rate_limit_per_second = 5
    state.rate_limit_per_window = 2000


async def _statuses(api: Api, n: int, **headers: str) -> list[int]:
    return [(await api.request("GET", SCOPES, headers=headers)).status for _ in range(n)]


async def test_sixth_request_in_a_second_is_429(api: Api, clock: ManualClock) -> None:
    """Five requests fit in one second; the sixth gets 429 RATE_LIMITED without Retry-After."""
    assert await _statuses(api, 5) == [200] * 5
    answer = await api.request("GET", SCOPES)
    assert (answer.status, answer.code) == (429, "RATE_LIMITED")
    assert "Retry-After" not in answer.headers
    clock.advance(1.0)
    assert await _statuses(api, 5) == [200] * 5


async def test_window_slides(api: Api, clock: ManualClock) -> None:
    """The short window is a sliding log, not a fixed bucket."""
    await _statuses(api, 3)
    clock.advance(0.6)
    assert await _statuses(api, 3) == [200, 200, 429]
    clock.advance(0.4)  # the first three left the window
    assert await _statuses(api, 4) == [200, 200, 200, 429]


async def test_refused_requests_are_not_counted(api: Api, clock: ManualClock) -> None:
    """429s do not use budget: hammering does not extend the wait."""
    await _statuses(api, 5)
    clock.advance(0.5)
    assert await _statuses(api, 20) == [429] * 20
    clock.advance(0.5)
    assert await _statuses(api, 5) == [200] * 5


async def test_long_window_is_429_too(api: Api, clock: ManualClock, state: EmulatorState) -> None:
    """With a scaled-down long window (8 per 10 s), the ninth request in 10 s gets 429."""
    state.rate_limit_per_window = 8
    state.rate_limit_window = 10.0
    statuses = []
    for _ in range(9):
        statuses += await _statuses(api, 1)
        clock.advance(1.0)
    assert statuses == [200] * 8 + [429]
    clock.advance(1.0)  # 10 s after the first one, which leaves the window
    assert await _statuses(api, 1) == [200]


async def test_retry_after_when_asked(api: Api, clock: ManualClock, state: EmulatorState) -> None:
    """send_retry_after adds Retry-After, in whole seconds, to 429s."""
    state.send_retry_after = True
    state.rate_limit_per_window = 3
    state.rate_limit_window = 60.0
    await _statuses(api, 3)
    clock.advance(10.0)
    answer = await api.request("GET", SCOPES)
    assert answer.status == 429
    assert answer.headers["Retry-After"] == "50"


async def test_limits_are_per_credential(api: Api) -> None:
    """One credential's budget does not touch another's."""
    await _statuses(api, 5)
    readonly = {
        "X-ClientId": READONLY_CLIENT_ID,
        "Authorization": f"Bearer {READONLY_ACCESS_TOKEN}",
    }
    assert await _statuses(api, 5, **readonly) == [200] * 5
    assert await _statuses(api, 1) == [429]


async def test_unauthenticated_requests_are_not_counted(api: Api) -> None:
    """401s happen before rate limiting and cost the credential nothing."""
    assert await _statuses(api, 10, Authorization="Bearer wrong") == [401] * 10
    assert await _statuses(api, 5) == [200] * 5


async def test_rate_limit_comes_before_accept_version(api: Api) -> None:
    """An over-budget request gets 429 even if it would also get 400."""
    await _statuses(api, 5)
    answer = await api.request("GET", SCOPES, without=("Accept-Version",))
    assert answer.status == 429


async def test_every_endpoint_counts(api: Api) -> None:
    """Polls, campaign reads and issues share one budget."""
    await api.issue()
    await api.get_job("job_missing")
    await api.request("GET", "/partner/campaigns/camp_welcome")
    await _statuses(api, 2)
    assert await _statuses(api, 1) == [429]


async def test_disabled_limits(api: Api, state: EmulatorState) -> None:
    """None or 0 switches a window off."""
    state.rate_limit_per_second = None
    state.rate_limit_per_window = 0
    assert set(await _statuses(api, 30)) == {200}


def test_sliding_log_reports_the_wait() -> None:
    """The wait is until the limit-th most recent stamp leaves its window."""
    log = SlidingLog()
    limits = ((2, 1.0), (3, 10.0))
    assert log.admit(0.0, limits) is None
    assert log.admit(0.5, limits) is None
    assert log.admit(0.7, limits) == pytest.approx(0.3)
    assert log.admit(1.0, limits) is None
    assert log.admit(2.0, limits) == pytest.approx(8.0)
