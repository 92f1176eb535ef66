"""Read-only views of what a running emulator saw and did, for users who do not write Python.

Three ``GET`` endpoints, off the API's ``/partner`` prefix, answer JSON with
no credentials (the emulator only listens on loopback) and are neither
logged nor rate limited:

``/_emulator/summary``
    requests by route and status, 429s, jobs by state, rewards issued,
    idempotent replays, and people rewarded more than once for one campaign
    variant (:func:`summary`).
``/_emulator/requests?route=issue&limit=100&bodies=1``
    the request log, oldest first (the last ``limit``, 100 by default);
    bodies only with ``bodies=1``; ``Authorization`` is always redacted.
``/_emulator/ledger?offset=0&limit=1000``
    the rewards issued, in job order, with ``total``.

:func:`format_summary` is what ``thanx-async emulator`` prints when it stops.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from thanx_async.testing._records import LoggedRequest
from thanx_async.testing._state import EmulatorState

__all__ = ["PREFIX", "add_routes", "format_summary", "summary"]

PREFIX = "/_emulator"
_DEFAULT_REQUESTS = 100
_DEFAULT_LEDGER = 1000


def summary(state: EmulatorState) -> dict[str, Any]:
    """Counts of everything the emulator received and did, as a JSON-able dict."""
    now = state.clock()
    by_route: dict[str, Counter[str]] = {}
    for request in state.requests:
        by_route.setdefault(request.route or "unknown", Counter())[str(request.status)] += 1
    jobs = Counter(job.state_at(now) for job in state.jobs.values())
    counts = state.issuance_counts()
    revoked = sum(
        len(job.issued_items(now))
        for job in state.jobs.values()
        if job.revoke_at is not None and job.state_at(now) == "revoked"
    )
    accepted = by_route.get("issue", Counter())["202"]
    return {
        "requests": {
            "total": len(state.requests),
            "logged": state.log_requests,
            "by_route": {route: dict(sorted(c.items())) for route, c in sorted(by_route.items())},
            "rate_limited": sum(c["429"] for c in by_route.values()),
        },
        "jobs": {"total": len(state.jobs), "by_state": dict(sorted(jobs.items()))},
        "idempotent_replays": max(0, accepted - len(state.jobs)) if state.log_requests else None,
        "rewards": {
            "issued": sum(counts.values()),
            "revoked": revoked,
            "people": len(counts),
            "rewarded_more_than_once": sum(1 for times in counts.values() if times > 1),
        },
    }


def _people(count: int) -> str:
    return f"{count:,} {'person' if count == 1 else 'people'}"


def format_summary(state: EmulatorState) -> str:
    """The summary as a few lines of text (printed when the standalone emulator stops)."""
    data = summary(state)
    requests, jobs, rewards = data["requests"], data["jobs"], data["rewards"]
    lines = [f"Emulator summary: {requests['total']:,} requests"]
    for route, statuses in requests["by_route"].items():
        detail = ", ".join(f"{status}: {times:,}" for status, times in statuses.items())
        lines.append(f"  {route:<15} {sum(statuses.values()):>8,}  ({detail})")
    lines.append(f"  answered 429    {requests['rate_limited']:>8,}")
    states = ", ".join(f"{name}: {times:,}" for name, times in jobs["by_state"].items())
    lines.append(f"  jobs            {jobs['total']:>8,}" + (f"  ({states})" if states else ""))
    if data["idempotent_replays"]:
        lines.append(f"  idempotent replays {data['idempotent_replays']:>5,}")
    lines.append(
        f"  rewards issued  {rewards['issued']:>8,}  to {_people(rewards['people'])} "
        f"({rewards['revoked']:,} revoked since)"
    )
    twice = rewards["rewarded_more_than_once"]
    lines.append(
        "  nobody rewarded twice for the same campaign variant"
        if not twice
        else f"  {_people(twice)} rewarded more than once for the same campaign variant"
    )
    return "\n".join(lines)


def _request_json(request: LoggedRequest, iso: Callable[[float], str], *, body: bool) -> Any:
    data: dict[str, Any] = {
        "at": iso(request.at),
        "method": request.method,
        "path": request.path,
        "query": request.query,
        "route": request.route,
        "status": request.status,
        "fault": request.fault,
        "headers": request.headers,
        "body_bytes": len(request.body),
    }
    if body:
        data["body"] = request.body.decode("utf-8", "replace")
    return data


def _int(query: Mapping[str, str], name: str, default: int) -> int:
    raw = query.get(name, "")
    try:
        value = int(raw) if raw else default
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name} must be an integer, got {raw!r}") from None
    if value < 0:
        raise web.HTTPBadRequest(text=f"{name} must be >= 0, got {value}")
    return value


def add_routes(app: web.Application, state: EmulatorState) -> None:
    """Register the read-only ``/_emulator/...`` endpoints on ``app`` (before its catch-all)."""

    async def get_summary(request: web.Request) -> web.Response:
        return web.json_response(summary(state))

    async def get_requests(request: web.Request) -> web.Response:
        route = request.query.get("route")
        limit = _int(request.query, "limit", _DEFAULT_REQUESTS)
        body = request.query.get("bodies") in ("1", "true", "yes")
        chosen = state.requests if route is None else state.requests_for(route)
        shown = chosen[max(0, len(chosen) - limit) :] if limit else []
        return web.json_response(
            {
                "total": len(chosen),
                "requests": [_request_json(r, state.iso, body=body) for r in shown],
            }
        )

    async def get_ledger(request: web.Request) -> web.Response:
        offset = _int(request.query, "offset", 0)
        limit = _int(request.query, "limit", _DEFAULT_LEDGER)
        entries = state.ledger()
        return web.json_response(
            {
                "total": len(entries),
                "entries": [
                    {
                        "job_id": e.job_id,
                        "merchant_id": e.merchant_id,
                        "campaign_id": e.campaign_id,
                        "variant_id": e.variant_id,
                        "type": e.identifier_type,
                        "value": e.identifier_value,
                        "revoked": e.revoked,
                    }
                    for e in entries[offset : offset + limit]
                ],
            }
        )

    app.router.add_get(f"{PREFIX}/summary", get_summary)
    app.router.add_get(f"{PREFIX}/requests", get_requests)
    app.router.add_get(f"{PREFIX}/ledger", get_ledger)
