"""Many processes, one credential: the shared rate budget on Redis (extra ``thanx-async[redis]``).

Give every process that uses a credential the same Redis and it shares
Thanx's two windows with all the others, with the in-process limiter's rules
(zero 429s, polls yielding to POSTs, 429s pausing everyone), on the Redis
server's clock.

Example::

    import thanx_async as ta
    from thanx_async.redis import RedisRateLimiter

    client = ta.ThanxClient(
        client_id=..., access_token=...,
        limiter=RedisRateLimiter("redis://127.0.0.1:6379/0", rate_limit=ta.RateLimit()),
    )
"""

# Names are imported on first use (PEP 562), as in the top package.

from __future__ import annotations

from typing import TYPE_CHECKING

from thanx_async._lazy import lazy_namespace

if TYPE_CHECKING:
    from thanx_async.redis._limiter import RedisRateLimiter

_EXPORTS = {
    "RedisRateLimiter": "thanx_async.redis._limiter",
}

__all__ = ["RedisRateLimiter"]

__getattr__, __dir__ = lazy_namespace(__name__, _EXPORTS, __all__, globals())
