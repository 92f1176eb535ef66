"""The receiver served for real: aiohttp on 127.0.0.1, and as ASGI (httpx, Starlette, by hand)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import httpx
import pytest
from aiohttp import web
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.routing import Mount, Route

from tests.webhooks.conftest import COMPLETED_DATA, SECRET, RecordingSink, envelope, signed
from thanx_async.webhooks import SIGNATURE_HEADER, AsgiApp, WebhookReceiver

PATH = "/webhooks/thanx"


def make_receiver(sink: RecordingSink, **options: Any) -> WebhookReceiver:
    return WebhookReceiver(secret=SECRET, batchers=[sink], tolerance=None, **options)


def delivery(job: str = "job_xyz789") -> tuple[bytes, dict[str, str]]:
    body, signature = signed(
        envelope("reward_batch.completed", {**COMPLETED_DATA, "issuance_job_id": job})
    )
    return body, {SIGNATURE_HEADER: signature, "Content-Type": "application/json"}


@pytest.fixture
async def served() -> AsyncIterator[Callable[[WebhookReceiver], Awaitable[str]]]:
    """Serves a receiver's aiohttp handler on a free loopback port; gives its URL."""
    runners: list[web.AppRunner] = []

    async def serve(receiver: WebhookReceiver) -> str:
        app = web.Application()  # default client_max_size (1 MiB) stays in place
        app.router.add_post(PATH, receiver.aiohttp_handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{runner.addresses[0][1]}{PATH}"

    yield serve
    for runner in runners:
        await runner.cleanup()


async def test_aiohttp_accepts_refuses_and_deduplicates(
    served: Callable[[WebhookReceiver], Awaitable[str]],
) -> None:
    """Over real HTTP: 200 for a signed delivery, 401 forged, 200 duplicate, 400 malformed."""
    sink = RecordingSink()
    url = await served(make_receiver(sink))
    body, headers = delivery()
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=body, headers=headers) as response:
            assert response.status == 200
            assert await response.json() == {"status": "accepted"}
        async with session.post(url, data=body, headers=headers) as response:
            assert await response.json() == {"status": "duplicate"}
        async with session.post(url, data=body) as response:
            assert response.status == 401
        forged = {**headers, SIGNATURE_HEADER: "f" * 64}
        async with session.post(url, data=body, headers=forged) as response:
            assert response.status == 401
        bad, signature = signed(b'{"event":"reward_batch.completed","data":[]}')
        async with session.post(url, data=bad, headers={SIGNATURE_HEADER: signature}) as response:
            assert response.status == 400
        async with session.get(url) as response:
            assert response.status == 405
    assert len(sink.events) == 1


async def test_aiohttp_caps_the_body(served: Callable[[WebhookReceiver], Awaitable[str]]) -> None:
    """413 for a declared or chunked body over max_body_size; aiohttp's 1 MiB cap is not used."""
    sink = RecordingSink()
    url = await served(make_receiver(sink, max_body_size=4 * 1024 * 1024))
    big_failures = [{"user_identifier": f"guest.{i}@example.com", "reason": "User not found"}
                    for i in range(40_000)]  # fmt: skip
    big, signature = signed(
        envelope("reward_batch.completed", {**COMPLETED_DATA, "failures": big_failures})
    )
    assert 1024 * 1024 < len(big) < 4 * 1024 * 1024
    huge = io.BytesIO(b"x" * (5 * 1024 * 1024))

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(5):
            yield b"y" * (1024 * 1024)

    async with aiohttp.ClientSession() as session:
        big_io = io.BytesIO(big)  # aiohttp warns about raw bytes over 1 MiB
        async with session.post(
            url, data=big_io, headers={SIGNATURE_HEADER: signature}
        ) as response:
            assert response.status == 200
        async with session.post(url, data=huge, headers={SIGNATURE_HEADER: "0" * 64}) as response:
            assert response.status == 413
        async with session.post(
            url, data=chunks(), headers={SIGNATURE_HEADER: "0" * 64}
        ) as response:
            assert response.status == 413
    assert len(sink.events) == 1
    assert len(sink.events[0].failures) == 40_000  # type: ignore[union-attr]


async def test_aiohttp_answers_before_a_slow_sink_runs(
    served: Callable[[WebhookReceiver], Awaitable[str]],
) -> None:
    """The answer does not wait for the sinks: a sink stuck for seconds delays no response."""
    started = asyncio.Event()
    release = asyncio.Event()

    class SlowSink:
        async def receive_webhook(self, event: object) -> bool:
            started.set()
            await release.wait()
            return True

    receiver = WebhookReceiver(secret=SECRET, batchers=[SlowSink()], tolerance=None)
    url = await served(receiver)
    body, headers = delivery()
    async with (
        aiohttp.ClientSession() as session,
        asyncio.timeout(2.0),
        session.post(url, data=body, headers=headers) as response,
    ):
        assert response.status == 200
    await asyncio.wait_for(started.wait(), 2.0)
    release.set()


async def asgi_post(
    app: Any, body: bytes, headers: dict[str, str], path: str = PATH
) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://webhooks.test") as client:
        return await client.post(path, content=body, headers=headers)


async def test_asgi_app_directly() -> None:
    """The ASGI app alone: 200, duplicate, 401, 405, 413 by content-length."""
    sink = RecordingSink()
    receiver = make_receiver(sink, max_body_size=2000)
    app = receiver.asgi_app
    assert isinstance(app, AsgiApp)
    assert receiver.asgi_app is app
    body, headers = delivery()
    response = await asgi_post(app, body, headers)
    assert (response.status_code, response.json()) == (200, {"status": "accepted"})
    assert (await asgi_post(app, body, headers)).json() == {"status": "duplicate"}
    assert (await asgi_post(app, body, {SIGNATURE_HEADER: "0" * 64})).status_code == 401
    assert (await asgi_post(app, body, {})).status_code == 401
    assert (await asgi_post(app, b"z" * 2001, headers)).status_code == 413
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://webhooks.test") as client:
        response = await client.get(PATH)
        assert (response.status_code, response.headers["allow"]) == (405, "POST")
    await asyncio.sleep(0)
    assert len(sink.events) == 1


@pytest.mark.parametrize("style", ["mount", "route", "fastapi"])
async def test_asgi_app_in_starlette(style: str) -> None:
    """Mounted in Starlette, as a Route endpoint, or a FastAPI route, it answers at its path."""
    sink = RecordingSink()
    receiver = make_receiver(sink)
    app: Any
    if style == "fastapi":
        app = FastAPI()
        app.add_route(PATH, receiver.asgi_app, methods=["POST"])
    elif style == "mount":
        app = Starlette(routes=[Mount(PATH, app=receiver.asgi_app)])
    else:
        app = Starlette(routes=[Route(PATH, receiver.asgi_app, methods=["POST"])])
    body, headers = delivery()
    path = PATH + "/" if style == "mount" else PATH
    response = await asgi_post(app, body, headers, path)
    assert response.status_code == 200
    response = await asgi_post(app, body, {SIGNATURE_HEADER: "0" * 64}, path)
    assert response.status_code == 401
    await asyncio.sleep(0)
    assert len(sink.events) == 1


async def call(
    app: AsgiApp, scope: dict[str, Any], messages: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Drive the ASGI app by hand: feed ``messages``, collect what it sends."""
    inbox = list(messages)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if inbox:
            return inbox.pop(0)
        await asyncio.sleep(3600)
        raise AssertionError("the app read past the end")

    async def send(message: Any) -> None:
        sent.append(dict(message))

    await app(scope, receive, send)
    return sent


def http_scope(headers: list[tuple[bytes, bytes]], method: str = "POST") -> dict[str, Any]:
    return {"type": "http", "method": method, "path": PATH, "headers": headers}


async def test_asgi_by_hand_chunked_body_and_cap() -> None:
    """Body parts are joined; a body growing past the cap without content-length gets 413."""
    sink = RecordingSink()
    receiver = make_receiver(sink, max_body_size=len(delivery()[0]) + 10)
    body, headers = delivery()
    signature = (SIGNATURE_HEADER.lower().encode(), headers[SIGNATURE_HEADER].encode())
    half = len(body) // 2
    sent = await call(receiver.asgi_app, http_scope([signature]), [
        {"type": "http.request", "body": body[:half], "more_body": True},
        {"type": "http.request", "body": body[half:], "more_body": False},
    ])  # fmt: skip
    assert sent[0]["status"] == 200
    sent = await call(receiver.asgi_app, http_scope([signature]), [
        {"type": "http.request", "body": body, "more_body": True},
        {"type": "http.request", "body": b"x" * 11, "more_body": True},
    ])  # fmt: skip
    assert sent[0]["status"] == 413
    assert receiver.stats.too_large == 1


async def test_asgi_by_hand_disconnect_and_lifespan() -> None:
    """A client that leaves mid-body gets nothing acted on; the lifespan protocol completes."""
    sink = RecordingSink()
    receiver = make_receiver(sink)
    body, headers = delivery()
    signature = (b"x-thanx-signature", headers[SIGNATURE_HEADER].encode())
    sent = await call(receiver.asgi_app, http_scope([signature]), [
        {"type": "http.request", "body": body[:10], "more_body": True},
        {"type": "http.disconnect"},
    ])  # fmt: skip
    assert sent == []
    sent = await call(receiver.asgi_app, {"type": "lifespan"}, [
        {"type": "lifespan.startup"}, {"type": "lifespan.shutdown"},
    ])  # fmt: skip
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    with pytest.raises(RuntimeError, match="HTTP only"):
        await call(receiver.asgi_app, {"type": "websocket"}, [])
    await asyncio.sleep(0)
    assert sink.events == []
    assert receiver.stats.received == 0
