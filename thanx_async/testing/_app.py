"""The emulator's wire layer: an aiohttp application over an :class:`EmulatorState`.

One catch-all handler routes by a small table instead of aiohttp's router, so
the order of checks is explicit and the same for every endpoint:

    route (404) → fault → auth (401) → rate limit (429) → ``Accept-Version`` (400)
    → scope (403) → ``Content-Type`` / JSON (400) → the endpoint itself

Everything after reading the body is synchronous, so no two requests can
interleave between an idempotency-cache lookup and the job it commits.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from typing import Any, Final

import orjson
from aiohttp import web

from thanx_async.testing import _endpoints, _inspect
from thanx_async.testing._faults import Fault
from thanx_async.testing._records import LoggedRequest
from thanx_async.testing._rules import ApiError, Reply, error_reply
from thanx_async.testing._state import EmulatorState

__all__ = ["STATE_KEY", "build_app"]

#: Where the application keeps its state.
STATE_KEY: Final = web.AppKey("thanx_emulator_state", EmulatorState)
_CLOSING: Final = web.AppKey("thanx_emulator_closing", asyncio.Event)

API_VERSION = "v4.0"
# Headroom over the largest legal body (10,000 long identifiers is ~1 MB).
MAX_BODY = 16 * 1024 * 1024

_ROUTES: Final = (
    ("POST", re.compile(r"/partner/campaigns/issue"), "issue"),
    ("GET", re.compile(r"/partner/campaigns"), "list_campaigns"),
    ("GET", re.compile(r"/partner/campaigns/([^/]+)"), "get_campaign"),
    ("GET", re.compile(r"/partner/issuance_jobs/([^/]+)"), "get_job"),
    ("POST", re.compile(r"/partner/issuance_jobs/([^/]+)/revoke"), "revoke"),
    ("GET", re.compile(r"/partner/scopes"), "scopes"),
)

_GARBAGE = b"<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1>\xde\xad\xbe\xef</body></html>"


def build_app(state: EmulatorState) -> web.Application:
    """An aiohttp application serving the Thanx partner API from ``state``."""
    app = web.Application(client_max_size=MAX_BODY)
    app[STATE_KEY] = state
    app[_CLOSING] = asyncio.Event()
    app.on_shutdown.append(_closing)
    _inspect.add_routes(app, state)  # read-only GET /_emulator/..., before the catch-all
    app.router.add_route("*", "/{tail:.*}", _handle)
    return app


async def _closing(app: web.Application) -> None:
    # Wakes requests sleeping in a scripted delay so shutdown does not wait them out.
    app[_CLOSING].set()


async def _delay(request: web.Request, seconds: float) -> bool:
    """Sleep ``seconds``; ``False`` if the server started shutting down meanwhile."""
    try:
        await asyncio.wait_for(request.app[_CLOSING].wait(), seconds)
    except TimeoutError:
        return True
    return False


def _match(method: str, path: str) -> tuple[str | None, str]:
    for route_method, pattern, name in _ROUTES:
        found = pattern.fullmatch(path)
        if found is not None and method == route_method:
            return name, (found.group(1) if pattern.groups else "")
    return None, ""


def _redacted(headers: Mapping[str, str]) -> dict[str, str]:
    return {
        name: ("Bearer ***" if name.lower() == "authorization" else value)
        for name, value in headers.items()
    }


def _check_version(headers: Mapping[str, str]) -> None:
    if headers.get("Accept-Version") != API_VERSION:
        raise ApiError(400, f"Accept-Version must be {API_VERSION!r}")


def _decode(request: web.Request, body: bytes) -> Any:
    if request.method != "POST":
        return None
    if request.content_type != "application/json":
        raise ApiError(400, "Content-Type must be application/json")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ApiError(400, "request body is not valid JSON") from None


def _dispatch(
    state: EmulatorState, request: web.Request, route: str, param: str, body: bytes
) -> Reply:
    headers = request.headers
    query = request.query
    try:
        credential = state.authenticate(headers.get("X-ClientId"), headers.get("Authorization"))
        state.admit(credential)
        _check_version(headers)
        state.authorize(credential, route)
        payload = _decode(request, body)
        match route:
            case "issue":
                key = headers.get("X-Idempotency-Key")
                reply = _endpoints.issue(state, credential, body, payload, key)
            case "get_job":
                reply = _endpoints.get_job(state, param, query)
            case "revoke":
                reply = _endpoints.revoke(state, param, payload)
            case "list_campaigns":
                reply = _endpoints.list_campaigns(state, query)
            case "get_campaign":
                reply = _endpoints.get_campaign(state, param)
            case _:
                reply = _endpoints.scopes(credential)
    except ApiError as error:
        reply = error.reply()
    return reply


def _hang_up(request: web.Request) -> web.Response:
    # force_close() closes the socket and stops keep-alive; aiohttp then fails
    # to write the returned response, treats it as a client disconnect and
    # moves on quietly. The client sees the connection close with no answer.
    request.protocol.force_close()
    return web.Response()


def _send(reply: Reply, fault: Fault | None) -> web.Response:
    body = reply.body
    if fault is not None and fault.malformed == "truncated":
        body = body[: len(body) // 2]
    elif fault is not None and fault.malformed == "garbage":
        body = _GARBAGE
    return web.Response(
        status=reply.status, body=body, content_type="application/json", headers=reply.headers
    )


async def _handle(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    arrived = state.clock()
    route, param = _match(request.method, request.path)
    fault = state.faults.take(route) if route is not None else None
    body = b""
    status = 0
    applied: str | None = None
    try:
        if fault is not None and fault.delay:
            applied = "delay"
            if not await _delay(request, fault.delay):
                return _hang_up(request)
        if fault is not None and fault.drop == "before":
            applied = "drop_before"
            return _hang_up(request)
        body = await request.read()
        if route is None:
            reply = error_reply(404, f"no route for {request.method} {request.path}")
        elif fault is not None and fault.status is not None:
            applied = "status"
            reply = error_reply(fault.status, f"scripted fault: {fault.status}")
        else:
            reply = _dispatch(state, request, route, param, body)
        status = reply.status
        if fault is not None and fault.drop == "after":
            applied = "drop_after"
            return _hang_up(request)
        if fault is not None and fault.malformed is not None:
            applied = fault.malformed
        return _send(reply, fault)
    finally:
        state.log(
            LoggedRequest(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                headers=_redacted(request.headers),
                body=body,
                status=status,
                at=arrived,
                route=route,
                fault=applied,
            )
        )
