"""thanx_async.redis: its public names, and that nobody pays for Redis who does not use it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from thanx_async import redis as ta_redis


def test_all_is_exactly_the_public_names() -> None:
    """__all__ lists exactly the exported names, and each resolves."""
    assert set(ta_redis.__all__) == set(ta_redis._EXPORTS)
    for name in ta_redis.__all__:
        assert getattr(ta_redis, name) is not None
    assert {n for n in dir(ta_redis) if not n.startswith("_")} == set(ta_redis.__all__)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = ta_redis.Nope


def test_redis_py_is_imported_only_when_the_limiter_is_used() -> None:
    """Importing thanx_async, or even thanx_async.redis, does not load redis-py."""
    code = (
        "import sys, thanx_async, thanx_async.redis; "
        "print('redis' in sys.modules); "
        "thanx_async.redis.RedisRateLimiter; print('redis' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["False", "True"]
