"""What each endpoint does once a request is authenticated, admitted and authorised.

Each function takes already-decoded inputs and returns a :class:`Reply`
(status and serialised JSON) or raises :class:`ApiError`; none of them knows
about aiohttp.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Mapping
from typing import Any

import orjson

from thanx_async.testing._jobs import COMPLETED, FAILED, Job
from thanx_async.testing._limits import CachedResponse
from thanx_async.testing._records import Credential
from thanx_async.testing._rules import ApiError, Reply, parse_issue, validate_identifiers
from thanx_async.testing._state import EmulatorState

__all__ = ["get_campaign", "get_job", "issue", "list_campaigns", "revoke", "scopes"]

IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"


def issue(
    state: EmulatorState,
    credential: Credential,
    body: bytes,
    payload: Any,
    idempotency_key: str | None,
) -> Reply:
    """``POST /partner/campaigns/issue``: create a job, or replay the cached response.

    Checks run in this order: idempotency cache (replay or 422), body shape
    (400), merchant and campaign (404), variant (400), identifiers (400
    ``BAD_REQUEST`` / ``USER_EMAIL_INVALID`` / ``USER_PHONE_INVALID``). Only a
    202 is cached: a refused request may be retried with the same key.
    """
    now = state.clock()
    if idempotency_key:
        cached = state.idempotency.get(
            credential.client_id, idempotency_key, now, state.idempotency_retention
        )
        if cached is not None:
            # Same bytes is the cheap, common case; equal JSON covers a client
            # that re-serialised the same content differently.
            if cached.body == body or cached.payload == payload:
                return Reply(cached.status, cached.response)
            raise ApiError(
                422,
                "this X-Idempotency-Key was already used with a different request body",
                IDEMPOTENCY_KEY_REUSED,
            )
    request = parse_issue(payload)
    campaign = state.catalog.campaigns.get(request.campaign_id)
    if request.merchant_id not in state.catalog.merchants:
        raise ApiError(404, f"merchant {request.merchant_id!r} not found")
    if campaign is None or campaign.merchant_id != request.merchant_id:
        raise ApiError(
            404, f"campaign {request.campaign_id!r} not found for merchant {request.merchant_id!r}"
        )
    if request.variant_id not in campaign.variant_ids():
        raise ApiError(
            400, f"variant {request.variant_id!r} does not belong to campaign {campaign.id!r}"
        )
    validate_identifiers(request.identifiers, state.server_rejected)
    job = Job(
        id=f"job_{secrets.token_hex(8)}",
        client_id=credential.client_id,
        merchant_id=request.merchant_id,
        campaign_id=request.campaign_id,
        variant_id=request.variant_id,
        identifiers=request.identifiers,
        created=now,
        start_delay=state.start_delay,
        speed=state.speed,
        not_found=state.is_not_found,
        failing=state.take_failing_flag(),
    )
    state.jobs[job.id] = job
    response = orjson.dumps({"issuance_job": job.to_json(now, state.iso, as_created=True)})
    if idempotency_key:
        state.idempotency.put(
            credential.client_id,
            idempotency_key,
            CachedResponse(body, payload, 202, response, now),
        )
    return Reply(202, response)


def _find_job(state: EmulatorState, job_id: str, merchant_id: Any) -> Job:
    if not isinstance(merchant_id, str) or not merchant_id:
        raise ApiError(400, "merchant_id is required")
    job = state.jobs.get(job_id)
    if job is None or job.merchant_id != merchant_id:
        raise ApiError(404, f"issuance job {job_id!r} not found for merchant {merchant_id!r}")
    return job


def get_job(state: EmulatorState, job_id: str, query: Mapping[str, str]) -> Reply:
    """``GET /partner/issuance_jobs/{id}?merchant_id=``."""
    job = _find_job(state, job_id, query.get("merchant_id"))
    return Reply(200, orjson.dumps({"issuance_job": job.to_json(state.clock(), state.iso)}))


def revoke(state: EmulatorState, job_id: str, payload: Any) -> Reply:
    """``POST /partner/issuance_jobs/{id}/revoke``: only ``completed`` or ``failed`` jobs."""
    if not isinstance(payload, dict):
        raise ApiError(400, "request body must be a JSON object")
    job = _find_job(state, job_id, payload.get("merchant_id"))
    now = state.clock()
    current = job.state_at(now)
    if current not in (COMPLETED, FAILED):
        raise ApiError(422, f"a {current} job cannot be revoked")
    job.revoke_at = now
    job.revoke_delay = state.revoke_delay
    return Reply(202, orjson.dumps({"issuance_job": job.to_json(now, state.iso)}))


def _int_param(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ApiError(400, f"{name} must be between {low} and {high}, got {value}")
    return value


def list_campaigns(state: EmulatorState, query: Mapping[str, str]) -> Reply:
    """``GET /partner/campaigns?merchant_id=&page=&per_page=``."""
    merchant_id = query.get("merchant_id")
    if not merchant_id:
        raise ApiError(400, "merchant_id is required")
    campaigns = state.catalog.merchants.get(merchant_id)
    if campaigns is None:
        raise ApiError(404, f"merchant {merchant_id!r} not found")
    page = _int_param(query, "page", 1, 1, 1_000_000)
    per_page = _int_param(query, "per_page", 10, 1, 100)
    start = (page - 1) * per_page
    body = {
        "campaigns": [campaign.to_json() for campaign in campaigns[start : start + per_page]],
        "pagination": {
            "current_page": page,
            "per_page": per_page,
            "total_pages": max(1, math.ceil(len(campaigns) / per_page)),
        },
    }
    return Reply(200, orjson.dumps(body))


def get_campaign(state: EmulatorState, campaign_id: str) -> Reply:
    """``GET /partner/campaigns/{id}``."""
    campaign = state.catalog.campaigns.get(campaign_id)
    if campaign is None:
        raise ApiError(404, f"campaign {campaign_id!r} not found")
    return Reply(200, orjson.dumps({"campaign": campaign.to_json()}))


def scopes(credential: Credential) -> Reply:
    """``GET /partner/scopes``: the credential's scopes."""
    return Reply(200, orjson.dumps({"scopes": list(credential.scopes)}))
