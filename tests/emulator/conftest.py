"""Fixtures for the emulator's own tests: a hand-driven clock and a raw aiohttp client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import attrs
import orjson
import pytest

from thanx_async.testing import (
    DEFAULT_ACCESS_TOKEN,
    DEFAULT_CAMPAIGN_ID,
    DEFAULT_CLIENT_ID,
    DEFAULT_MERCHANT_ID,
    DEFAULT_VARIANT_ID,
    EmulatorState,
    ManualClock,
    ThanxEmulator,
)

#: The headers every well-formed request carries.
HEADERS: Mapping[str, str] = {
    "Authorization": f"Bearer {DEFAULT_ACCESS_TOKEN}",
    "X-ClientId": DEFAULT_CLIENT_ID,
    "Accept-Version": "v4.0",
}
ISSUE = "/partner/campaigns/issue"


def identifiers(n: int, *, start: int = 0) -> list[dict[str, str]]:
    """``n`` distinct valid identifiers, alternating email and phone."""
    return [
        {"type": "email", "value": f"guest.{i}@example.com"}
        if i % 2 == 0
        else {"type": "phone", "value": f"+1415{i:07d}"}
        for i in range(start, start + n)
    ]


def issue_body(items: list[Any] | None = None, **overrides: Any) -> dict[str, Any]:
    """A valid issue body for the default campaign, with ``overrides`` applied."""
    body: dict[str, Any] = {
        "merchant_id": DEFAULT_MERCHANT_ID,
        "campaign_id": DEFAULT_CAMPAIGN_ID,
        "variant_id": DEFAULT_VARIANT_ID,
        "identifiers": identifiers(2) if items is None else items,
    }
    body.update(overrides)
    return body


@attrs.frozen
class Answer:
    """What the emulator answered."""

    status: int
    raw: bytes
    headers: Mapping[str, str]

    @property
    def json(self) -> Any:
        return orjson.loads(self.raw)

    @property
    def code(self) -> str:
        code: str = self.json["error"]["code"]
        return code

    @property
    def job(self) -> dict[str, Any]:
        job: dict[str, Any] = self.json["issuance_job"]
        return job


class Api:
    """A raw HTTP client for the emulator: it sends exactly what a test says."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        without: tuple[str, ...] = (),
        params: Mapping[str, str] | None = None,
    ) -> Answer:
        """Send with the default headers, ``headers`` on top, ``without`` removed."""
        sent = {**HEADERS, **(headers or {})}
        if json is not None:
            body = orjson.dumps(json)
            sent.setdefault("Content-Type", "application/json")
        for name in without:
            sent.pop(name, None)
        async with self.session.request(
            method, self.url + path, data=body, headers=sent, params=params
        ) as response:
            return Answer(response.status, await response.read(), dict(response.headers))

    async def issue(
        self, items: list[Any] | None = None, *, key: str | None = None, **overrides: Any
    ) -> Answer:
        headers = {"X-Idempotency-Key": key} if key else {}
        return await self.request(
            "POST", ISSUE, json=issue_body(items, **overrides), headers=headers
        )

    async def get_job(self, job_id: str, merchant_id: str = DEFAULT_MERCHANT_ID) -> Answer:
        return await self.request(
            "GET", f"/partner/issuance_jobs/{job_id}", params={"merchant_id": merchant_id}
        )

    async def revoke(self, job_id: str, merchant_id: str = DEFAULT_MERCHANT_ID) -> Answer:
        return await self.request(
            "POST", f"/partner/issuance_jobs/{job_id}/revoke", json={"merchant_id": merchant_id}
        )


@pytest.fixture
def clock() -> ManualClock:
    """A clock that moves only when the test advances it."""
    return ManualClock()


@pytest.fixture
def state(clock: ManualClock) -> EmulatorState:
    """Emulator state on the manual clock, rate limits off (their tests turn them on)."""
    return EmulatorState(clock=clock, rate_limit_per_second=None, rate_limit_per_window=None)


@pytest.fixture
async def emulator(state: EmulatorState) -> AsyncIterator[ThanxEmulator]:
    """A running emulator serving ``state``."""
    async with ThanxEmulator(state) as running:
        yield running


@pytest.fixture
async def api(emulator: ThanxEmulator) -> AsyncIterator[Api]:
    """A raw client for ``emulator``."""
    async with aiohttp.ClientSession() as session:
        yield Api(session, emulator.url)
