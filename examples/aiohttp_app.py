"""Issue rewards from an aiohttp app; the batcher lives exactly as long as the app.

Run it (against ``thanx-async emulator``, or the sandbox with your credentials)::

    THANX_CLIENT_ID=... THANX_ACCESS_TOKEN=... THANX_BASE_URL=... python examples/aiohttp_app.py
    curl -X POST localhost:8080/rewards -d '{"identifier": "jane@example.com"}'

Every request handler shares one RewardBatcher, so concurrent requests are
issued together in one batch (one API request for up to 10,000 people).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator

from aiohttp import web

import thanx_async as ta

BATCHER = web.AppKey("batcher", ta.RewardBatcher)
BACKGROUND = web.AppKey("background", set[asyncio.Future[ta.IssuanceOutcome]])
log = logging.getLogger("rewards")


# --8<-- [start:thanx]
async def thanx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: open the client and batcher at startup, close them at shutdown."""
    async with ta.ThanxClient.from_env() as client:
        batcher = ta.RewardBatcher(
            client,
            merchant_id=os.environ.get("THANX_MERCHANT_ID", "merchant_demo"),
            campaign_id=os.environ.get("THANX_CAMPAIGN_ID", "camp_welcome"),
            variant_id=os.environ.get("THANX_VARIANT_ID", "var_welcome_treat"),
            max_wait=0.5,  # a request waits at most this long for others to batch with
        )
        async with batcher:
            app[BATCHER] = batcher
            app[BACKGROUND] = set()
            yield
            # Shutdown: leaving the block sends what is batched and waits for the outcomes.


# --8<-- [end:thanx]


def outcome_json(outcome: ta.IssuanceOutcome) -> dict[str, str | None]:
    return {
        "identifier": outcome.identifier.value,
        "status": outcome.status.value,
        "job_id": outcome.job_id,
        "error": outcome.error,
    }


# --8<-- [start:body]
def bad_request(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=json.dumps({"error": message}), content_type="application/json")


async def read_body(request: web.Request) -> tuple[str, str | None]:
    """The body's ``identifier`` and optional ``event_id``; 400 for anything else."""
    try:
        body = await request.json()
    except ValueError:
        raise bad_request("the body must be JSON") from None
    if not isinstance(body, dict) or "identifier" not in body:
        raise bad_request('the body needs an "identifier" (an email or an E.164 phone)')
    identifier, event_id = body["identifier"], body.get("event_id")
    if not isinstance(identifier, str) or not isinstance(event_id, str | None):
        raise bad_request('"identifier" and "event_id" must be strings')
    return identifier, event_id


# --8<-- [end:body]


# --8<-- [start:reward]
async def reward(request: web.Request) -> web.Response:
    """POST /rewards {"identifier", "event_id"?}: wait for the outcome and return it."""
    identifier, event_id = await read_body(request)
    try:
        outcome = await request.app[BATCHER].issue(identifier, dedupe_key=event_id)
    except ta.InvalidIdentifierError as exc:
        return web.json_response({"error": exc.reason}, status=422)
    except ta.ThanxError as exc:
        return web.json_response({"error": str(exc)}, status=502)
    return web.json_response(outcome_json(outcome))


# --8<-- [end:reward]


# --8<-- [start:reward_later]
async def reward_later(request: web.Request) -> web.Response:
    """POST /rewards/async: answer 202 once queued; the outcome is logged when it arrives."""
    identifier, event_id = await read_body(request)
    try:
        future = await request.app[BATCHER].submit(identifier, dedupe_key=event_id)
    except ta.InvalidIdentifierError as exc:
        return web.json_response({"error": exc.reason}, status=422)
    background = request.app[BACKGROUND]
    background.add(future)
    future.add_done_callback(background.discard)
    future.add_done_callback(log_outcome)
    return web.json_response({"queued": identifier}, status=202)


def log_outcome(future: asyncio.Future[ta.IssuanceOutcome]) -> None:
    if future.cancelled():
        return
    if (exc := future.exception()) is not None:
        log.warning("reward not issued: %s", exc)
    else:
        log.info("reward %s", outcome_json(future.result()))


# --8<-- [end:reward_later]


def make_app() -> web.Application:
    app = web.Application()
    app.cleanup_ctx.append(thanx)
    app.router.add_post("/rewards", reward)
    app.router.add_post("/rewards/async", reward_later)
    return app


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    web.run_app(make_app(), host="127.0.0.1", port=int(os.environ.get("PORT", "8080")))
