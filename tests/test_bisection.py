"""Refused identifiers are isolated on the rate budget: by the server's named index, or halving."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

import orjson
import pytest

import thanx_async as ta
from thanx_async._transport._http import Response
from thanx_async.testing import (
    DEFAULT_CAMPAIGN_ID,
    DEFAULT_MERCHANT_ID,
    DEFAULT_VARIANT_ID,
    ThanxEmulator,
)

pytestmark = pytest.mark.thanx_emulator(start_delay=0.0, speed=1_000_000.0)


def email(i: int) -> str:
    return f"user{i}@example.com"


def batcher_for(client: ta.ThanxClient, journal: Path | None = None) -> ta.RewardBatcher:
    return ta.RewardBatcher(
        client,
        merchant_id=DEFAULT_MERCHANT_ID,
        campaign_id=DEFAULT_CAMPAIGN_ID,
        variant_id=DEFAULT_VARIANT_ID,
        max_wait=0.05,
        journal=journal,
    )


@pytest.mark.parametrize("journaled", [False, True], ids=["memory", "journal"])
async def test_named_offenders_cost_about_one_post_each(
    thanx_client: ta.ThanxClient, thanx_emulator: ThanxEmulator, tmp_path: Path, journaled: bool
) -> None:
    """20 refused in a batch of 2,000 cost 21 POSTs, not hundreds; errors name their positions."""
    size, bad = 2_000, set(range(7, 2_000, 100))
    for i in bad:
        thanx_emulator.state.server_rejected.add(("email", email(i)))
    journal = tmp_path / "j.db" if journaled else None
    async with batcher_for(thanx_client, journal) as b:
        futures = await asyncio.gather(*(b.submit(email(i)) for i in range(size)))
        outcomes = await asyncio.gather(*futures)
    assert len(thanx_emulator.state.requests_for("issue")) == len(bad) + 1
    for i, outcome in enumerate(outcomes):
        if i in bad:
            assert outcome.status is ta.OutcomeStatus.FAILED
            assert outcome.error is not None
            # The position in the batch the caller's identifier was sealed into.
            assert f"identifiers[{i}]" in outcome.error, outcome.error
        else:
            assert outcome.issued
    assert sum(thanx_emulator.state.issuance_counts().values()) == size - len(bad)


class UnnamingTransport:
    """Refuses any batch holding a rejected value with USER_EMAIL_INVALID, naming no index."""

    def __init__(self, rejected: set[str]) -> None:
        self.rejected = rejected
        self.posts = 0

    async def send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None,
        timeout: float,
    ) -> Response:
        assert body is not None
        self.posts += 1
        values = [i["value"] for i in orjson.loads(body)["identifiers"]]
        if self.rejected & set(values):
            error = {"code": "USER_EMAIL_INVALID", "message": "an email is not valid"}
            return Response(400, {}, orjson.dumps({"error": error}))
        job = {
            "id": f"job_{self.posts}",
            "state": "completed",
            "total_count": len(values),
            "success_count": len(values),
            "failure_count": 0,
            "summary": {"success_count": len(values), "failure_count": 0, "failures": []},
        }
        return Response(202, {}, orjson.dumps({"issuance_job": job}))

    async def aclose(self) -> None:
        """Nothing to release."""


async def test_without_a_named_index_the_batch_is_halved() -> None:
    """A server that names no position still gets its offender isolated, by halving."""
    transport = UnnamingTransport({email(37)})
    async with (
        ta.ThanxClient(
            client_id="c", access_token="t", base_url="http://unnaming.test", transport=transport
        ) as client,
        ta.RewardBatcher(client, merchant_id="m", campaign_id="c", variant_id="v") as b,
    ):
        futures = [await b.submit(email(i)) for i in range(64)]
        outcomes = await asyncio.gather(*futures)
    assert [i for i, o in enumerate(outcomes) if not o.issued] == [37]
    assert outcomes[37].error == "an email is not valid"
    assert transport.posts <= 2 * 6 + 1  # two halves per level of a 64-identifier batch


def test_the_named_index_must_fit_the_batch() -> None:
    """An index outside the batch, or of the wrong type for the code, is not trusted."""
    from thanx_async._accumulator import Entry, Partition
    from thanx_async._runner import named_offender

    loop = asyncio.new_event_loop()
    try:
        partition = Partition("m", "c", "v")
        entries = [
            Entry(partition, "email", "a@example.com", None, loop=loop),
            Entry(partition, "phone", "+14155551234", None, loop=loop),
        ]

        def blame(message: str, code: str = "USER_EMAIL_INVALID") -> int | None:
            return named_offender(ta.BadRequestError(400, code, message), entries)

        assert blame("identifiers[0]: bad") == 0
        assert blame("identifiers[1]: bad", "USER_PHONE_INVALID") == 1
        assert blame("identifiers[1]: bad") is None  # a phone blamed for an email code
        assert blame("identifiers[2]: bad") is None
        assert blame("no position here") is None
    finally:
        loop.close()
