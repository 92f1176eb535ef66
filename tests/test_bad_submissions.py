"""One bad submission never fails others: refused at submit(), with a typed error, alone."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

import thanx_async as ta
from thanx_async._journal import Journal
from thanx_async.testing import (
    DEFAULT_CAMPAIGN_ID,
    DEFAULT_MERCHANT_ID,
    DEFAULT_VARIANT_ID,
    ThanxEmulator,
)

pytestmark = pytest.mark.thanx_emulator(start_delay=0.0, speed=1_000_000.0)

GOOD = [f"good{i}@example.com" for i in range(5)]
LONE_SURROGATE = "\ud800x@example.com"  # what json.loads makes of "\\ud800x@example.com"


def batcher_for(client: ta.ThanxClient, journal: Path | None = None) -> ta.RewardBatcher:
    return ta.RewardBatcher(
        client,
        merchant_id=DEFAULT_MERCHANT_ID,
        campaign_id=DEFAULT_CAMPAIGN_ID,
        variant_id=DEFAULT_VARIANT_ID,
        max_wait=0.05,
        journal=journal,
    )


async def submit_bad_among_good(
    batcher: ta.RewardBatcher, bad: object, **options: object
) -> tuple[list[ta.IssuanceOutcome], BaseException]:
    """Submit GOOD around one bad submission in the same loop turn; their outcomes and its error."""
    first = [asyncio.ensure_future(batcher.issue(g)) for g in GOOD[:2]]
    bad_call = asyncio.ensure_future(batcher.submit(bad, **options))  # type: ignore[arg-type]
    rest = [asyncio.ensure_future(batcher.issue(g)) for g in GOOD[2:]]
    error = (await asyncio.gather(bad_call, return_exceptions=True))[0]
    assert isinstance(error, BaseException)
    outcomes = await asyncio.gather(*first, *rest)
    return list(outcomes), error


@pytest.mark.parametrize("journaled", [False, True], ids=["memory", "journal"])
@pytest.mark.parametrize(
    ("bad", "options", "expected"),
    [
        pytest.param(LONE_SURROGATE, {}, ta.InvalidIdentifierError, id="lone-surrogate"),
        pytest.param(
            ta.Identifier("email", LONE_SURROGATE), {}, ta.InvalidIdentifierError, id="hand-built"
        ),
        pytest.param(
            ta.Identifier("fax", "+14155550100"),  # type: ignore[arg-type]
            {},
            ta.InvalidIdentifierError,
            id="hand-built-type",
        ),
        pytest.param("bad@example.com", {"dedupe_key": 42}, TypeError, id="int-dedupe-key"),
        pytest.param("bad@example.com", {"dedupe_key": b"evt"}, TypeError, id="bytes-dedupe-key"),
        pytest.param("bad@example.com", {"dedupe_key": "\udfff"}, ValueError, id="surrogate-key"),
        pytest.param("bad@example.com", {"campaign_id": 7}, TypeError, id="int-campaign"),
    ],
)
async def test_a_bad_submission_is_refused_alone(  # noqa: PLR0917 - fixtures and params
    thanx_client: ta.ThanxClient,
    thanx_emulator: ThanxEmulator,
    tmp_path: Path,
    journaled: bool,
    bad: object,
    options: dict[str, object],
    expected: type[BaseException],
) -> None:
    """The bad call raises a typed error at submit(); everyone batched beside it is issued."""
    journal = tmp_path / "j.db" if journaled else None
    async with batcher_for(thanx_client, journal) as batcher:
        outcomes, error = await submit_bad_among_good(batcher, bad, **options)
    assert isinstance(error, expected)
    assert [o.status for o in outcomes] == [ta.OutcomeStatus.ISSUED] * len(GOOD)
    sent = [v for r in thanx_emulator.state.requests_for("issue") for v in [r.body]]
    assert all(b"bad@example.com" not in body for body in sent)


async def test_one_failing_journal_write_does_not_roll_back_the_others(tmp_path: Path) -> None:
    """A write that fails inside a group commit fails alone; the rest of the group commits."""
    journal = Journal(tmp_path / "j.db", synchronous="OFF")
    await journal.open()
    try:
        partition = ("m", "c", "v")
        admitted = journal.admit_many([(partition, "email", "a@example.com", None)])
        broken = journal.forget([object()])  # type: ignore[list-item]  # cannot be bound
        results = await asyncio.gather(admitted, broken, return_exceptions=True)
    finally:
        await journal.aclose()
    assert isinstance(results[0], list)
    assert isinstance(results[1], ta.JournalError)
    with sqlite3.connect(tmp_path / "j.db") as conn:
        assert conn.execute("SELECT value FROM items").fetchall() == [("a@example.com",)]


async def test_a_full_disk_is_reported_as_such(tmp_path: Path) -> None:
    """When SQLite says the disk is full, the JournalError says so (not 'cannot rollback')."""
    journal = Journal(tmp_path / "j.db", synchronous="OFF")
    await journal.open()
    try:
        assert journal._conn is not None
        pages = journal._conn.execute("PRAGMA page_count").fetchone()[0]
        journal._conn.execute(f"PRAGMA max_page_count = {pages + 2}")
        items = [(("m", "c", "v"), "email", f"user{i}@example.com", None) for i in range(5_000)]
        with pytest.raises(ta.JournalError) as caught:
            await journal.admit_many(items)
    finally:
        await journal.aclose()
    assert "full" in str(caught.value)
    assert "rollback" not in str(caught.value)
