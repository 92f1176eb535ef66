"""(d) Raw aiohttp: POST pre-serialised 10,000-identifier bodies, nothing else.

The wire floor, for context: no validation, no futures, no rate limiter, no
retries, no job tracking. Bodies are built before the clock starts; each POST
carries the five documented headers and a fresh idempotency key.
"""

from __future__ import annotations

import asyncio
import uuid

import aiohttp
import orjson

from thanx_async.testing import DEFAULT_ACCESS_TOKEN, DEFAULT_CLIENT_ID


def serialise(
    identifiers: list[str], *, merchant_id: str, campaign_id: str, variant_id: str, size: int
) -> list[bytes]:
    """Issue bodies of ``size`` identifiers each (done before timing)."""
    bodies = []
    for start in range(0, len(identifiers), size):
        items = [
            {"type": "email" if "@" in value else "phone", "value": value}
            for value in identifiers[start : start + size]
        ]
        body = {
            "merchant_id": merchant_id, "campaign_id": campaign_id,
            "variant_id": variant_id, "identifiers": items,
        }  # fmt: skip
        bodies.append(orjson.dumps(body))
    return bodies


async def post_all(base_url: str, bodies: list[bytes], *, concurrency: int = 4) -> list[int]:
    """POST every body, ``concurrency`` at a time; returns the statuses."""
    headers = {
        "Authorization": f"Bearer {DEFAULT_ACCESS_TOKEN}",
        "X-ClientId": DEFAULT_CLIENT_ID,
        "Accept-Version": "v4.0",
        "Content-Type": "application/json",
        "User-Agent": "bench-raw/1.0",
    }
    slots = asyncio.Semaphore(concurrency)
    url = base_url + "/partner/campaigns/issue"

    async def post(session: aiohttp.ClientSession, body: bytes) -> int:
        async with slots:
            key = {"X-Idempotency-Key": str(uuid.uuid4())}
            async with session.post(url, data=body, headers=headers | key) as resp:
                await resp.read()
                return resp.status

    async with aiohttp.ClientSession() as session:
        return await asyncio.gather(*(post(session, body) for body in bodies))
