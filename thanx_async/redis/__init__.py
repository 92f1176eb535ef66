"""Many processes, one credential: shared budget and ledger in Redis (``thanx-async[redis]``).

Give every process that uses a credential the same Redis and it shares
Thanx's two windows with all the others (:class:`RedisRateLimiter`), with the
in-process limiter's rules, on the Redis server's clock; and one ledger
(:class:`RedisJournal`): an identifier is issued once across the fleet, and a
dead process's work is adopted by a live one.

Example::

    import thanx_async as ta
    from thanx_async.redis import RedisJournal, RedisRateLimiter

    url = "redis://127.0.0.1:6379/0"
    client = ta.ThanxClient(
        client_id=..., access_token=...,
        limiter=RedisRateLimiter(url, rate_limit=ta.RateLimit()),
    )
    batcher = ta.RewardBatcher(client, journal=RedisJournal(url, name="rewards"))
"""

# Names are imported on first use (PEP 562), as in the top package.

from __future__ import annotations

from typing import TYPE_CHECKING

from thanx_async._lazy import lazy_namespace

if TYPE_CHECKING:
    from thanx_async.redis._journal import RedisJournal
    from thanx_async.redis._limiter import RedisRateLimiter

_EXPORTS = {
    "RedisJournal": "thanx_async.redis._journal",
    "RedisRateLimiter": "thanx_async.redis._limiter",
}

__all__ = ["RedisJournal", "RedisRateLimiter"]

__getattr__, __dir__ = lazy_namespace(__name__, _EXPORTS, __all__, globals())
