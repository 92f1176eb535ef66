"""Real redis-server processes for the tests that need Redis (never a mock of it).

Tests start their own ``redis-server`` on a free 127.0.0.1 port
(:class:`thanx_async.testing.RedisServer`), without persistence unless they
ask for it (``extra_args``, e.g. :data:`AOF_ALWAYS`). Where redis-server is
not installed those tests skip, unless ``THANX_REQUIRE_REDIS=1`` (set by CI),
which turns its absence into a failure.

Fixtures built on this live in ``tests/conftest.py``: ``redis_server`` (one
server for the session; tests keep apart by using their own keys) and
``own_redis_server`` (a private server a test may stop, kill and restart).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest

from thanx_async.testing._redis_server import AOF_ALWAYS, free_port
from thanx_async.testing._redis_server import RedisServer as _RedisServer

__all__ = ["AOF_ALWAYS", "RedisServer", "free_port", "redis_server_binary"]


def redis_server_binary() -> str:
    """The redis-server executable; skips the test without one (fails it if CI requires one)."""
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("THANX_REQUIRE_REDIS") == "1":
            pytest.fail("THANX_REQUIRE_REDIS=1 but redis-server is not on PATH")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    return binary


class RedisServer(_RedisServer):
    """``thanx_async.testing.RedisServer`` that skips (fails in CI) without redis-server."""

    def __init__(
        self, directory: Path, port: int | None = None, extra_args: Sequence[str] = ()
    ) -> None:
        super().__init__(directory, port, extra_args, binary=redis_server_binary())
