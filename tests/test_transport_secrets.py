"""Secrets: a server echoing our headers never puts the token in an error or a log line."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from aiohttp import web

import thanx_async as ta
from tests.conftest import CLIENT_ID, NO_LIMIT, TOKEN

Handler = Callable[[web.Request], web.Response]
RETRY = ta.RetryPolicy(max_attempts=3, initial_backoff=0.0, max_backoff=0.0, deadline=10.0)
ISSUE_ARGS: dict[str, Any] = {
    "merchant_id": "m1",
    "campaign_id": "c1",
    "variant_id": "v1",
    "identifiers": ["jane@example.com"],
}


class Echo:
    """A 127.0.0.1 server whose answers are built from each request by a handler."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.authorizations: list[str] = []
        self.url = ""

    async def _handle(self, request: web.Request) -> web.Response:
        self.authorizations.append(request.headers.get("Authorization", ""))
        return self.handler(request)

    @classmethod
    async def running(cls, handler: Handler) -> AsyncIterator[Echo]:
        echo = cls(handler)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", echo._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        echo.url = f"http://127.0.0.1:{port}"
        try:
            yield echo
        finally:
            await runner.cleanup()


def headers_text(request: web.Request) -> str:
    return "\n".join(f"{k}: {v}" for k, v in request.headers.items())


def json_echo(status: int) -> Handler:
    def handler(request: web.Request) -> web.Response:
        message = f"we got these headers: {headers_text(request)}"
        body = {"error": {"code": "ECHO", "message": message}}
        return web.json_response(body, status=status)

    return handler


def text_echo(status: int, *, padding: int = 0) -> Handler:
    def handler(request: web.Request) -> web.Response:
        auth = request.headers["Authorization"]
        return web.Response(status=status, text=f"{'x' * padding}{auth}\n{headers_text(request)}")

    return handler


def url_encoded_echo(status: int) -> Handler:
    def handler(request: web.Request) -> web.Response:
        return web.Response(status=status, text=quote(headers_text(request), safe=""))

    return handler


def undecodable_job(request: web.Request) -> web.Response:
    """A 2xx job made of the Authorization header: the decode error quotes it (maybe cut)."""
    auth = request.headers["Authorization"]
    job = {"id": {"echo": auth}, "state": "pending", "total_count": auth}
    return web.json_response({"issuance_job": job}, status=202)


@pytest.fixture
async def server(request: pytest.FixtureRequest) -> AsyncIterator[Echo]:
    async for echo in Echo.running(request.param):
        yield echo


def client_for(echo: Echo, token: str | ta.TokenProvider = TOKEN) -> ta.ThanxClient:
    return ta.ThanxClient(
        client_id=CLIENT_ID, access_token=token, base_url=echo.url, retry=RETRY, rate_limit=NO_LIMIT
    )


def everything(exc: BaseException, caplog: pytest.LogCaptureFixture) -> str:
    """Every text a user can see: the error in all its forms, its attributes, every log line."""
    texts = [str(exc), repr(exc), repr(vars(exc)), caplog.text]
    texts += [record.getMessage() for record in caplog.records]
    return "\n".join(texts)


@pytest.mark.parametrize(
    "server",
    [
        json_echo(503),  # retried: WARNING logs, then ServerError
        json_echo(400),
        text_echo(502),
        text_echo(403, padding=185),  # the token straddles the 200-character cut
        url_encoded_echo(500),
        undecodable_job,  # MalformedResponseError from a 2xx
    ],
    indirect=True,
    ids=["json-503", "json-400", "text-502", "text-straddling-cut", "url-encoded", "2xx"],
)
async def test_an_echoing_server_never_gets_the_token_into_errors_or_logs(
    server: Echo, caplog: pytest.LogCaptureFixture
) -> None:
    """Error messages, reprs and DEBUG/WARNING logs never contain the token, whole or in part."""
    caplog.set_level(logging.DEBUG, logger="thanx_async")
    async with client_for(server) as client:
        with pytest.raises(ta.ThanxError) as info:
            await client.issue_rewards(**ISSUE_ARGS)
    assert server.authorizations[0] == f"Bearer {TOKEN}"  # the echo did see it
    seen = everything(info.value, caplog)
    assert "<redact" in seen  # the echo reached the error, the token cut out (maybe cut short)
    assert TOKEN not in seen
    assert TOKEN[:12] not in seen  # not even a piece of it


@pytest.mark.parametrize("server", [json_echo(503)], indirect=True)
async def test_tokens_from_a_provider_are_redacted_too(
    server: Echo, caplog: pytest.LogCaptureFixture
) -> None:
    """Every token a provider returned (the first and the refreshed one) stays out of errors."""
    tokens = iter([f"{TOKEN}-first\n", f"{TOKEN}-second"])

    async def provider() -> str:
        return next(tokens)

    caplog.set_level(logging.DEBUG, logger="thanx_async")
    async with client_for(server, provider) as client:
        with pytest.raises(ta.ServerError) as info:
            await client.get_scopes()
    assert server.authorizations[0] == f"Bearer {TOKEN}-first"  # stripped of its newline
    seen = everything(info.value, caplog)
    assert TOKEN not in seen


@pytest.mark.parametrize("server", [json_echo(200)], indirect=True)
async def test_a_token_read_with_its_newline_is_stripped(server: Echo) -> None:
    """A static token with surrounding whitespace (a secrets file's newline) is sent stripped."""
    with pytest.raises(ta.MalformedResponseError):  # the echo is no scopes list; fine
        async with client_for(server, f"  {TOKEN}\n") as client:
            await client.get_scopes()
    assert set(server.authorizations) == {f"Bearer {TOKEN}"}


@pytest.mark.parametrize(
    "token",
    [f"{TOKEN}\r\nX-Injected: 1", f"{TOKEN}\x00", f"sk_{TOKEN} more", "\n\t ", f"{TOKEN}\x7f"],
)
def test_a_broken_token_is_refused_at_construction_without_echoing_it(token: str) -> None:
    """Control characters or whitespace inside a token are a ValueError naming no secret."""
    with pytest.raises(ValueError, match="access_token") as info:
        ta.ThanxClient(client_id=CLIENT_ID, access_token=token)
    assert TOKEN not in str(info.value)
    assert "sk_" not in str(info.value)


@pytest.mark.parametrize("server", [json_echo(200)], indirect=True)
async def test_a_broken_token_from_a_provider_fails_the_call_unsent(server: Echo) -> None:
    """A provider's token with a control character inside fails with TransportError, unsent."""

    async def provider() -> str:
        return f"{TOKEN}\r\nX-Injected: 1"

    async with client_for(server, provider) as client:
        with pytest.raises(ta.TransportError, match="nothing was sent") as info:
            await client.issue_rewards(**ISSUE_ARGS)
    assert info.value.may_have_succeeded is False
    assert TOKEN not in str(info.value)
    assert not server.authorizations


def test_redaction_also_covers_pieces_of_a_token_cut_by_someone_else() -> None:
    """A token's head or tail (8+ characters) left by another's truncation is redacted too."""
    from thanx_async._transport._auth import TokenSource

    source = TokenSource(TOKEN)
    head, tail = TOKEN[:15], TOKEN[-10:]
    assert source.redact(f"got 'Bearer {head}...'") == "got 'Bearer <redacted>...'"
    assert source.redact(f"...{tail}' done") == "...<redacted>' done"
    assert source.redact("sk_live is a common word") == "sk_live is a common word"


def test_redaction_also_covers_a_json_escaped_token() -> None:
    """A token with characters JSON escapes is redacted in its escaped spelling too."""
    from thanx_async._transport._auth import TokenSource

    token = 'tok"en\\with-quotes-123'
    source = TokenSource(token)
    escaped = orjson.dumps(token).decode()[1:-1]
    assert source.redact(f"got {escaped} and {token}") == "got <redacted> and <redacted>"
