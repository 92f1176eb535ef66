"""Shared fixtures for the test suite."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import thanx_async as ta
from tests.redis_support import RedisServer

BASE = "http://thanx.test"
TOKEN = "sk_live_SUPERSECRET_TOKEN_123"  # a fake, asserted never to leak
CLIENT_ID = "client-abc"

#: Retries without waiting, so unit tests of retry rules stay fast.
FAST_RETRY = ta.RetryPolicy(max_attempts=4, initial_backoff=0.0, max_backoff=0.0, deadline=None)
#: A budget that never binds in unit tests.
NO_LIMIT = ta.RateLimit(per_second=10_000, per_window=1_000_000)


@pytest.fixture
async def client() -> AsyncIterator[ta.ThanxClient]:
    """A client with a static token, instant retries and a budget that never binds."""
    async with ta.ThanxClient(
        client_id=CLIENT_ID,
        access_token=TOKEN,
        base_url=BASE,
        retry=FAST_RETRY,
        rate_limit=NO_LIMIT,
    ) as c:
        yield c


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the session; tests keep apart by using their own keys."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private real redis-server that the test may stop, kill and restart."""
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
