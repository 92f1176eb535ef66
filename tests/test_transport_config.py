"""Small things users hit: a bad base_url, a huge invalid identifier, an unclosed client."""

from __future__ import annotations

import gc
import time
import warnings

import pytest

import thanx_async as ta
from tests.conftest import CLIENT_ID, NO_LIMIT, TOKEN
from thanx_async.testing import DEFAULT_ACCESS_TOKEN, DEFAULT_CLIENT_ID, ThanxEmulator


@pytest.mark.parametrize(
    ("base_url", "match"),
    [
        ("api.thanxsandbox.com", "https://"),
        ("localhost:8080", "https://"),
        ("ftp://api.thanx.com", "https://"),
        ("https://", "no host"),
        ("https:///partner", "no host"),
        ("", "https://"),
        ("https://api.thanx.com?x=1", "no query"),
        ("https://user:pw@api.thanx.com", "credentials"),
        ("http://127.0.0.1:notaport", "not a valid URL"),
    ],
)
def test_an_unusable_base_url_is_refused_at_construction(base_url: str, match: str) -> None:
    """A base_url without http(s) scheme or host is a ValueError at once, not 10 s of retries."""
    started = time.monotonic()
    with pytest.raises(ValueError, match=match):
        ta.ThanxClient(client_id=CLIENT_ID, access_token=TOKEN, base_url=base_url)
    assert time.monotonic() - started < 0.5


@pytest.mark.parametrize(
    "base_url",
    [
        ta.SANDBOX_URL,
        ta.PRODUCTION_URL,
        "http://127.0.0.1:8080/",
        "https://proxy.example.com/thanx",
        "http://[::1]:9000",
    ],
)
def test_usable_base_urls_are_accepted(base_url: str) -> None:
    """http(s) URLs with a host, a port or a path prefix are accepted (trailing slash dropped)."""
    client = ta.ThanxClient(client_id=CLIENT_ID, access_token=TOKEN, base_url=base_url)
    assert client.base_url == base_url.rstrip("/")


def test_from_env_refuses_a_schemeless_base_url() -> None:
    """THANX_BASE_URL without a scheme is refused by from_env too, naming the variable's value."""
    env = {"THANX_CLIENT_ID": "c", "THANX_ACCESS_TOKEN": TOKEN, "THANX_BASE_URL": "api.thanx.com"}
    with pytest.raises(ValueError, match=r"api\.thanx\.com") as info:
        ta.ThanxClient.from_env(env)
    assert TOKEN not in str(info.value)


def test_a_huge_invalid_identifier_gives_a_short_message() -> None:
    """A 1 MB invalid identifier is kept whole in .value but shown cut in the message."""
    value = "x" * 1_000_000
    with pytest.raises(ta.InvalidIdentifierError) as info:
        ta.Identifier.parse(value)
    assert info.value.value == value
    message = str(info.value)
    assert len(message) < 300
    assert "(1000000 characters)" in message
    assert message.startswith("invalid identifier 'xxxx")


def test_a_short_invalid_identifier_is_shown_whole() -> None:
    """An ordinary bad identifier still appears whole in its message."""
    with pytest.raises(ta.InvalidIdentifierError, match=r"invalid identifier '4155551234'"):
        ta.Identifier.parse("4155551234")


async def test_an_unclosed_client_that_talked_to_a_server_warns() -> None:
    """A client used against a real server and never closed emits a ResourceWarning."""
    async with ThanxEmulator() as emulator:
        client = ta.ThanxClient(
            client_id=DEFAULT_CLIENT_ID,
            access_token=DEFAULT_ACCESS_TOKEN,
            base_url=emulator.url,
            rate_limit=NO_LIMIT,
        )
        await client.get_scopes()
        session = client._http._session  # type: ignore[union-attr]
        with pytest.warns(ResourceWarning, match="never closed"):
            del client  # the last reference: __del__ runs here
        assert session is not None
        await session.close()


async def test_a_closed_client_does_not_warn() -> None:
    """A client closed with async with emits no ResourceWarning when collected."""
    async with ThanxEmulator() as emulator:
        async with ta.ThanxClient(
            client_id=DEFAULT_CLIENT_ID,
            access_token=DEFAULT_ACCESS_TOKEN,
            base_url=emulator.url,
            rate_limit=NO_LIMIT,
        ) as client:
            await client.get_scopes()
        with warnings.catch_warnings():
            warnings.simplefilter("error", ResourceWarning)
            del client
            gc.collect()  # nothing is raised
