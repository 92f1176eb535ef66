"""RewardBatcher on a RedisJournal, against the emulator: the journal contract end to end.

The fleet behaviours of the batcher (joining another process's item, adopting
a dead one's work, ``on_outcome``) are the batcher's; these tests only show
that a RedisJournal serves the batcher as the SQLite journal does.
"""

from __future__ import annotations

import pytest

import thanx_async as ta
from tests.redis.journal_helpers import unique_name
from tests.redis_support import RedisServer
from thanx_async.redis import RedisJournal
from thanx_async.testing import (
    DEFAULT_CAMPAIGN_ID,
    DEFAULT_MERCHANT_ID,
    DEFAULT_VARIANT_ID,
    ThanxEmulator,
)

pytestmark = pytest.mark.thanx_emulator(start_delay=0.0, speed=1_000_000.0)


def batcher_for(client: ta.ThanxClient, journal: RedisJournal) -> ta.RewardBatcher:
    return ta.RewardBatcher(
        client,
        merchant_id=DEFAULT_MERCHANT_ID,
        campaign_id=DEFAULT_CAMPAIGN_ID,
        variant_id=DEFAULT_VARIANT_ID,
        journal=journal,
        max_wait=0.02,
    )


async def test_a_batcher_on_a_redis_journal_issues_once_and_answers_from_the_record(
    thanx_client: ta.ThanxClient, thanx_emulator: ThanxEmulator, redis_server: RedisServer
) -> None:
    """Issued once; after a restart (a new journal object), resubmissions get the record."""
    name = unique_name()
    emails = [f"user{i}@example.com" for i in range(50)]
    async with batcher_for(thanx_client, RedisJournal(redis_server.url, name=name)) as first:
        outcomes = [await f for f in [await first.submit(e) for e in emails]]
    assert all(o.issued for o in outcomes)
    posts = len(thanx_emulator.state.requests_for("issue"))
    async with batcher_for(thanx_client, RedisJournal(redis_server.url, name=name)) as second:
        again = [await second.issue(e) for e in emails]
    assert [o.job_id for o in again] == [o.job_id for o in outcomes]
    assert all(o.issued for o in again)
    assert len(thanx_emulator.state.requests_for("issue")) == posts  # nothing sent again
    assert set(thanx_emulator.state.issuance_counts().values()) == {1}
