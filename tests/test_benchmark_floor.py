"""The benchmarks' contract floor gives every identifier the outcome RewardBatcher gives it.

docs/performance.md calls the W1 targets out of reach because this floor,
doing less than any implementation of the contract, misses them. That holds
only if the floor does its part of the work correctly: these tests check its
outcomes against RewardBatcher's, with back-pressure engaged.
"""

from __future__ import annotations

import asyncio

import pytest

import thanx_async as ta
from benchmarks._floor import ContractFloor
from benchmarks._run import identifiers
from tests.test_batcher import PARTITION

pytestmark = pytest.mark.thanx_emulator(
    start_delay=0.0, speed=1_000_000.0, rate_limit_per_second=None, rate_limit_per_window=None
)

#: The benchmarks' identifiers: emails, phones, and some the emulator does not know.
VALUES = identifiers(2_500)


def person(outcome: ta.IssuanceOutcome) -> tuple[object, ...]:
    return (outcome.identifier, outcome.status, outcome.error, outcome.dedupe_key)


async def sdk_outcomes(client: ta.ThanxClient) -> list[ta.IssuanceOutcome]:
    async with ta.RewardBatcher(client, max_batch_size=1_000, **PARTITION) as batcher:
        futures = [await batcher.submit(value) for value in VALUES]
        await batcher.flush()
        return list(await asyncio.gather(*futures))


@pytest.mark.parametrize("deferred", [False, True], ids=["at-once", "deferred"])
async def test_floor_outcomes_match_the_batcher(
    thanx_client: ta.ThanxClient, deferred: bool
) -> None:
    """Same identifier, status and error per person; each outcome a real IssuanceOutcome."""
    expected = await sdk_outcomes(thanx_client)
    floor = ContractFloor(
        thanx_client, max_batch_size=1_000, max_pending=2_000, deferred=deferred, **PARTITION
    )
    futures = [await floor.submit(value) for value in VALUES]  # waits at 2,000 pending
    await floor.flush()
    got = await asyncio.gather(*futures)
    await floor.aclose()

    assert [person(o) for o in got] == [person(o) for o in expected]
    assert {o.status for o in got} == {ta.OutcomeStatus.ISSUED, ta.OutcomeStatus.FAILED}
    assert all(type(o) is ta.IssuanceOutcome and o.job is not None for o in got)
    assert all(o.job_id == o.job.id for o in got if o.job is not None)


async def test_floor_refuses_an_invalid_identifier_and_shares_a_pending_one(
    thanx_client: ta.ThanxClient,
) -> None:
    """Validation and dedupe, the contract's per-identifier work, are really done."""
    floor = ContractFloor(thanx_client, max_batch_size=10, **PARTITION)
    with pytest.raises(ta.InvalidIdentifierError):
        await floor.submit("not an identifier")
    first = await floor.submit("Jane@Example.com")
    again = await floor.submit("jane@example.com")
    await floor.flush()
    assert (await first).identifier == ta.Identifier("email", "jane@example.com")
    assert (await again) == (await first)
    await floor.aclose()
