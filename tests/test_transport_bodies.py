"""Bounded memory against any server: capped bodies, absurd headers, typed errors."""

from __future__ import annotations

import asyncio
import contextlib
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

import thanx_async as ta
from tests.conftest import CLIENT_ID, NO_LIMIT, TOKEN

ISSUE_ARGS: dict[str, Any] = {
    "merchant_id": "m1",
    "campaign_id": "c1",
    "variant_id": "v1",
    "identifiers": ["jane@example.com"],
}
MIB = 1024 * 1024
#: What the endless server sends per connection at most (so the old, uncapped code
#: fails with a payload error instead of eating the machine's memory).
ENDLESS_LIMIT = 48 * MIB

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    """A 127.0.0.1 server that answers every request with a scripted byte stream."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests = 0
        self.sent = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for handler in self._handlers:  # a writer still blocked on a full socket
            handler.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await reader.readuntil(b"\r\n\r\n")
            self.requests += 1
            await self.script(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


def endless(status: str, server: list[RawServer]) -> Script:
    """A chunked body that never ends (up to ENDLESS_LIMIT bytes per connection)."""
    chunk = b"[" + b"0," * 32_767 + b"0"  # 64 KiB of a JSON array that never closes

    async def script(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(
            f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
        )
        sent = 0
        while sent < ENDLESS_LIMIT:
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)
            server[0].sent += len(chunk)
            await writer.drain()

    return script


def raw(payload: bytes) -> Script:
    async def script(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(payload)
        await writer.drain()

    return script


@contextlib.asynccontextmanager
async def serving(make: Callable[[list[RawServer]], Script]) -> AsyncIterator[RawServer]:
    holder: list[RawServer] = []
    async with RawServer(make(holder)) as server:
        holder.append(server)
        yield server


def client_for(url: str, *, max_bytes: int = MIB, attempts: int = 2) -> ta.ThanxClient:
    return ta.ThanxClient(
        client_id=CLIENT_ID,
        access_token=TOKEN,
        base_url=url,
        rate_limit=NO_LIMIT,
        retry=ta.RetryPolicy(
            max_attempts=attempts, initial_backoff=0.0, max_backoff=0.0, deadline=20.0
        ),
        max_response_bytes=max_bytes,
    )


async def test_an_endless_202_to_an_issue_post_is_cut_off_and_typed() -> None:
    """An endless 202 body stops at the cap: MalformedResponseError, 'may have been issued'."""
    async with (
        serving(lambda s: endless("202 Accepted", s)) as server,
        client_for(server.url) as client,
    ):
        with pytest.raises(ta.MalformedResponseError) as info:
            await client.issue_rewards(**ISSUE_ARGS)
    assert info.value.status == 202
    assert info.value.may_have_succeeded is True
    assert "size cap" in str(info.value)
    assert "may have been issued" in str(info.value)
    assert server.requests == 2  # re-sent once (same key) within the retry policy
    # The client stopped reading at the cap; only what sat in socket buffers went further.
    assert server.sent < 2 * 12 * MIB


async def test_memory_stays_near_the_cap_whatever_the_body() -> None:
    """Reading an endless body allocates about the cap, not what the server sends."""
    async with (
        serving(lambda s: endless("200 OK", s)) as server,
        client_for(server.url, attempts=1) as client,
    ):
        tracemalloc.start()
        try:
            with pytest.raises(ta.MalformedResponseError) as info:
                await client.get_scopes()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert info.value.may_have_succeeded is False  # a GET changes nothing
    assert peak < 2 * MIB, peak


async def test_a_declared_huge_body_is_not_read() -> None:
    """A Content-Length over the cap is refused before reading it (default 16 MiB cap)."""
    payload = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000000000000\r\n\r\n{"
    )
    async with (
        RawServer(raw(payload)) as server,
        client_for(server.url, max_bytes=16 * MIB, attempts=1) as client,
    ):
        with pytest.raises(ta.MalformedResponseError, match="size cap"):
            await client.get_scopes()


async def test_an_endless_error_body_keeps_its_status_and_a_short_message() -> None:
    """An endless 503 body is still a ServerError (retried), with a message of bounded size."""
    async with (
        serving(lambda s: endless("503 Service Unavailable", s)) as server,
        client_for(server.url) as client,
    ):
        with pytest.raises(ta.ServerError) as info:
            await client.get_scopes()
    assert server.requests == 2
    assert len(str(info.value)) < 400


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nX-Echo: Bearer " + TOKEN.encode() + b"a" * 100_000 + b"\r\n",
        b"HTTP/1.1 200 " + b"O" * 100_000 + b"\r\n",
        b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: a\r\n" % i for i in range(10_000)),
        b"\x00\x01 not http " + TOKEN.encode() + b"\r\n",
    ],
    ids=["long-header", "long-status", "many-headers", "garbage"],
)
async def test_absurd_heads_are_transport_errors_quoting_nothing(head: bytes) -> None:
    """A huge header, status line, header count or garbage is a short TransportError."""
    payload = head + b"Content-Length: 2\r\n\r\n{}"
    async with RawServer(raw(payload)) as server, client_for(server.url) as client:
        with pytest.raises(ta.TransportError) as info:
            await client.get_scopes()
    message = str(info.value)
    assert len(message) < 300, message
    assert TOKEN not in message
    assert "aaaa" not in message
    assert "OOOO" not in message
