"""Testing application code against the emulator, with thanx-async's pytest plugin.

The plugin is active as soon as thanx-async is installed (with pytest-asyncio):
``thanx_client`` is a ThanxClient for a fresh emulator, ``thanx_emulator`` the
emulator itself (its ``state`` records every request and every reward), and
``@pytest.mark.thanx_emulator(...)`` sets the emulator's options.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from signup import SignupRewards

import thanx_async as ta
from thanx_async.testing import (
    DEFAULT_CAMPAIGN_ID,
    DEFAULT_MERCHANT_ID,
    DEFAULT_VARIANT_ID,
    ThanxEmulator,
)

# Jobs finish at once: tests do not wait for the emulator's realistic job times.
pytestmark = pytest.mark.thanx_emulator(start_delay=0.0, speed=float("inf"))


@pytest.fixture
async def rewards(thanx_client: ta.ThanxClient) -> AsyncIterator[SignupRewards]:
    async with ta.RewardBatcher(
        thanx_client,
        merchant_id=DEFAULT_MERCHANT_ID,
        campaign_id=DEFAULT_CAMPAIGN_ID,
        variant_id=DEFAULT_VARIANT_ID,
        max_wait=0.01,  # tests need no batching delay
    ) as batcher:
        yield SignupRewards(batcher)


async def test_a_new_member_is_rewarded(
    rewards: SignupRewards, thanx_emulator: ThanxEmulator
) -> None:
    """A valid email is normalised and rewarded once."""
    outcome = await rewards.on_signup("Jane@Example.com", "evt_1")
    assert outcome is not None
    assert outcome.issued
    assert thanx_emulator.state.issued_count("email", "jane@example.com") == 1


async def test_a_redelivered_event_is_not_rewarded_twice(
    rewards: SignupRewards, thanx_emulator: ThanxEmulator
) -> None:
    """The same event twice gets the same job back, not a second reward."""
    first = await rewards.on_signup("sam@example.com", "evt_2")
    again = await rewards.on_signup("sam@example.com", "evt_2")
    assert first is not None
    assert again is not None
    assert again.job_id == first.job_id  # same content, same idempotency key, same job
    assert thanx_emulator.state.issued_count("email", "sam@example.com") == 1


async def test_someone_without_an_account_is_reported(rewards: SignupRewards) -> None:
    """A person without a Thanx account comes back FAILED with the reason."""
    # The emulator's rule: an email whose local part starts with "unknown" has no account.
    outcome = await rewards.on_signup("unknown.bob@example.com", "evt_3")
    assert outcome is not None
    assert outcome.status is ta.OutcomeStatus.FAILED
    assert outcome.error == "User not found"


async def test_an_invalid_email_sends_nothing(
    rewards: SignupRewards, thanx_emulator: ThanxEmulator
) -> None:
    """An invalid email is refused before any request."""
    assert await rewards.on_signup("not-an-email", "evt_4") is None
    assert thanx_emulator.state.requests_for("issue") == []


async def test_a_flaky_server_is_retried(
    rewards: SignupRewards, thanx_emulator: ThanxEmulator
) -> None:
    """A 503 and a dropped response are retried without a double reward."""
    thanx_emulator.state.faults.add("issue", status=503)  # the first attempt fails
    thanx_emulator.state.faults.add("issue", drop="after")  # the second commits, then hangs up
    outcome = await rewards.on_signup("lee@example.com", "evt_5")
    assert outcome is not None
    assert outcome.issued
    assert thanx_emulator.state.issued_count("email", "lee@example.com") == 1
    assert len(thanx_emulator.state.requests_for("issue")) == 3


@pytest.mark.thanx_emulator(start_delay=0.0, speed=float("inf"), rate_limit_per_second=4)
async def test_the_rate_limit_is_respected(
    rewards: SignupRewards, thanx_emulator: ThanxEmulator
) -> None:
    """Requests wait for the emulator's rate budget instead of getting 429s."""
    for n in range(3):  # three separate batches and their polls, at most 4 requests a second
        outcome = await rewards.on_signup(f"guest{n}@example.com", f"evt_6_{n}")
        assert outcome is not None
        assert outcome.issued
    assert all(r.status != 429 for r in thanx_emulator.state.requests)
