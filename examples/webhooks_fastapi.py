"""A FastAPI app that issues rewards and receives Thanx's webhooks, alone or as a fleet.

Run it with uvicorn (against ``thanx-async emulator --webhook-url
http://127.0.0.1:8000/webhooks/thanx``, or the sandbox)::

    THANX_CLIENT_ID=... THANX_ACCESS_TOKEN=... THANX_BASE_URL=... THANX_WEBHOOK_SECRET=... \\
        uvicorn webhooks_fastapi:app --app-dir examples --port 8000

Several replicas behind one webhook URL: set ``REDIS_URL`` in each. A delivery
lands in one replica; a ``WebhookRelay`` shares it through Redis, so the batch
waiting on that job finishes in whichever replica holds it, without a poll.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request
from pydantic import BaseModel

import thanx_async as ta
from thanx_async.webhooks import WebhookReceiver, WebhookSink


def webhook_secret() -> str:
    """The webhook secret Thanx signs with, from the environment (never from code)."""
    secret = os.environ.get("THANX_WEBHOOK_SECRET", "")
    if not secret:
        raise RuntimeError("set THANX_WEBHOOK_SECRET to the webhook secret Thanx gave you")
    return secret


# --8<-- [start:app]
receiver = WebhookReceiver(secret=webhook_secret())


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open the client, the relay (with REDIS_URL) and the batcher; close them in reverse."""
    async with ta.ThanxClient.from_env() as client, AsyncExitStack() as stack:
        relay = None
        if redis_url := os.environ.get("REDIS_URL"):
            from thanx_async.redis import WebhookRelay  # noqa: PLC0415 - only with Redis

            relay = await stack.enter_async_context(WebhookRelay(redis_url))
        batcher = ta.RewardBatcher(
            client,
            merchant_id=os.environ.get("THANX_MERCHANT_ID", "merchant_demo"),
            campaign_id=os.environ.get("THANX_CAMPAIGN_ID", "camp_welcome"),
            variant_id=os.environ.get("THANX_VARIANT_ID", "var_welcome_treat"),
            max_wait=0.5,
        )
        # Closed before the relay: jobs still running at shutdown can finish by webhook.
        await stack.enter_async_context(batcher)
        sink: WebhookSink = batcher
        if relay is not None:
            relay.attach(batcher)  # deliveries landing in any replica reach this batcher
            sink = relay  # and those landing here reach the others
        receiver.add_sink(sink)  # the batcher now polls only as a safety net
        app.state.batcher = batcher
        try:
            yield
        finally:
            receiver.remove_sink(sink)


app = FastAPI(lifespan=lifespan)
# Starlette's type hints name request handlers only; an ASGI app is routed as well.
app.add_route("/webhooks/thanx", receiver.asgi_app, methods=["POST"])  # type: ignore[arg-type]
# --8<-- [end:app]


def get_batcher(request: Request) -> ta.RewardBatcher:
    batcher: ta.RewardBatcher = request.app.state.batcher
    return batcher


Batcher = Annotated[ta.RewardBatcher, Depends(get_batcher)]


class RewardRequest(BaseModel):
    identifier: str
    event_id: str | None = None


class RewardResponse(BaseModel):
    identifier: str
    status: str
    job_id: str | None
    error: str | None


@app.post("/rewards")
async def reward(body: RewardRequest, batcher: Batcher) -> RewardResponse:
    """Issue one reward and return its outcome (concurrent requests share one batch)."""
    try:
        outcome = await batcher.issue(body.identifier, dedupe_key=body.event_id)
    except ta.InvalidIdentifierError as exc:
        raise HTTPException(status_code=422, detail=exc.reason) from None
    except ta.ThanxError as exc:
        raise HTTPException(status_code=502, detail=str(exc)) from None
    return RewardResponse(
        identifier=outcome.identifier.value,
        status=outcome.status.value,
        job_id=outcome.job_id,
        error=outcome.error,
    )


@app.get("/stats")
async def stats(batcher: Batcher) -> dict[str, int]:
    """What this replica's batcher sent, and what its webhook endpoint received."""
    s, received = batcher.stats(), receiver.stats
    return {"posts": s.posts, "polls": s.polls, "webhooks_accepted": received.accepted}
