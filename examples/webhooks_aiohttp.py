"""An aiohttp app that issues rewards and receives Thanx's webhooks: outcomes without polling.

Run it (against ``thanx-async emulator --webhook-url http://127.0.0.1:8080/webhooks/thanx``,
or the sandbox with your credentials and Thanx pointed at your public URL)::

    THANX_CLIENT_ID=... THANX_ACCESS_TOKEN=... THANX_BASE_URL=... \\
    THANX_WEBHOOK_SECRET=... python examples/webhooks_aiohttp.py
    curl -X POST localhost:8080/rewards -d '{"identifier": "jane@example.com"}'

``POST /webhooks/thanx`` verifies each delivery's signature (401 if it is not
Thanx's), answers at once, and hands ``reward_batch.completed`` to the
batcher, which resolves that job's rewards without a poll. A delivery that
never comes (Thanx does not retry) is caught by polling, after the job's
predicted end plus a grace.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator

from aiohttp import web

import thanx_async as ta
from thanx_async.webhooks import WebhookReceiver

BATCHER = web.AppKey("batcher", ta.RewardBatcher)
RECEIVER = web.AppKey("receiver", WebhookReceiver)


# --8<-- [start:secret]
def webhook_secret() -> str:
    """The webhook secret Thanx signs with, from the environment (never from code)."""
    secret = os.environ.get("THANX_WEBHOOK_SECRET", "")
    if not secret:
        raise SystemExit("set THANX_WEBHOOK_SECRET to the webhook secret Thanx gave you")
    return secret


# --8<-- [end:secret]


# --8<-- [start:thanx]
async def thanx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: the client and batcher live as long as the app; webhooks feed it."""
    async with ta.ThanxClient.from_env() as client:
        batcher = ta.RewardBatcher(
            client,
            merchant_id=os.environ.get("THANX_MERCHANT_ID", "merchant_demo"),
            campaign_id=os.environ.get("THANX_CAMPAIGN_ID", "camp_welcome"),
            variant_id=os.environ.get("THANX_VARIANT_ID", "var_welcome_treat"),
            max_wait=0.5,
        )
        async with batcher:
            app[BATCHER] = batcher
            # The batcher now polls each job only as a safety net, after its
            # predicted end plus a grace: a job whose webhook arrives costs no poll.
            app[RECEIVER].add_sink(batcher)
            yield
            # Shutdown: the server has stopped listening, so jobs still running are polled.
        app[RECEIVER].remove_sink(batcher)


def make_app() -> web.Application:
    app = web.Application()
    receiver = WebhookReceiver(secret=webhook_secret())
    app[RECEIVER] = receiver
    app.cleanup_ctx.append(thanx)
    app.router.add_post("/webhooks/thanx", receiver.aiohttp_handler)
    app.router.add_post("/rewards", reward)
    app.router.add_get("/stats", stats)
    return app


# --8<-- [end:thanx]


async def reward(request: web.Request) -> web.Response:
    """POST /rewards {"identifier", "event_id"?}: wait for the outcome and return it."""
    try:
        body = await request.json()
    except ValueError:
        body = None
    fields = body if isinstance(body, dict) else {}
    identifier, event_id = fields.get("identifier"), fields.get("event_id")
    if not isinstance(identifier, str) or not isinstance(event_id, str | None):
        error = 'send JSON with an "identifier" (an email or an E.164 phone)'
        return web.json_response({"error": error}, status=400)
    try:
        outcome = await request.app[BATCHER].issue(identifier, dedupe_key=event_id)
    except ta.InvalidIdentifierError as exc:
        return web.json_response({"error": exc.reason}, status=422)
    except ta.ThanxError as exc:
        return web.json_response({"error": str(exc)}, status=502)
    return web.json_response(
        {
            "identifier": outcome.identifier.value,
            "status": outcome.status.value,
            "job_id": outcome.job_id,
            "error": outcome.error,
        }
    )


async def stats(request: web.Request) -> web.Response:
    """GET /stats: what the batcher sent and what the webhook endpoint received."""
    batcher, received = request.app[BATCHER].stats(), request.app[RECEIVER].stats
    return web.json_response(
        {
            "posts": batcher.posts,
            "polls": batcher.polls,
            "webhooks_accepted": received.accepted,
            "webhooks_refused": received.unauthorized,
            "webhooks_duplicates": received.duplicates,
        }
    )


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    web.run_app(make_app(), host="127.0.0.1", port=int(os.environ.get("PORT", "8080")))
