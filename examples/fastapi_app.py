"""Issue rewards from a FastAPI (or Starlette) app; the app's lifespan owns the batcher.

Run it with uvicorn (against ``thanx-async emulator``, or the sandbox)::

    THANX_CLIENT_ID=... THANX_ACCESS_TOKEN=... THANX_BASE_URL=... \\
        uvicorn fastapi_app:app --app-dir examples --port 8000
    curl -X POST localhost:8000/rewards -H 'content-type: application/json' \\
        -d '{"identifier": "jane@example.com"}'

Run one uvicorn worker (the default): every worker process has its own batcher,
rate limiter and journal, while Thanx's limits are per credential. What is and
is not safe with several workers: docs/guides/fastapi.md, "Workers".
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request
from pydantic import BaseModel

import thanx_async as ta


# --8<-- [start:lifespan]
@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open the client and batcher at startup; at shutdown send what is batched and wait."""
    async with ta.ThanxClient.from_env() as client:
        batcher = ta.RewardBatcher(
            client,
            merchant_id=os.environ.get("THANX_MERCHANT_ID", "merchant_demo"),
            campaign_id=os.environ.get("THANX_CAMPAIGN_ID", "camp_welcome"),
            variant_id=os.environ.get("THANX_VARIANT_ID", "var_welcome_treat"),
            max_wait=0.5,
        )
        async with batcher:
            app.state.batcher = batcher
            yield


app = FastAPI(lifespan=lifespan)
# --8<-- [end:lifespan]


# --8<-- [start:dependency]
def get_batcher(request: Request) -> ta.RewardBatcher:
    batcher: ta.RewardBatcher = request.app.state.batcher
    return batcher


Batcher = Annotated[ta.RewardBatcher, Depends(get_batcher)]
# --8<-- [end:dependency]


class RewardRequest(BaseModel):
    identifier: str
    event_id: str | None = None  # pass it to reward the same person again for a new event


class RewardResponse(BaseModel):
    identifier: str
    status: str
    job_id: str | None
    error: str | None


# --8<-- [start:endpoint]
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


# --8<-- [end:endpoint]


@app.get("/stats")
async def stats(batcher: Batcher) -> dict[str, int]:
    """The batcher's counters, e.g. for a health or metrics endpoint."""
    s = batcher.stats()
    return {"submitted": s.submitted, "pending": s.pending, "posts": s.posts, "issued": s.issued}
