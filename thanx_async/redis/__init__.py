"""Many processes, one credential, sharing through Redis (extra ``thanx-async[redis]``).

Give every process that uses a credential the same Redis and it shares
Thanx's two windows with all the others, with the in-process limiter's rules
(zero 429s, polls yielding to POSTs, 429s pausing everyone), on the Redis
server's clock (:class:`RedisRateLimiter`); one ledger (:class:`RedisJournal`):
an identifier is issued once across the fleet, and a dead process's work is
adopted by a live one; and a webhook delivered to any process finishes the job
in whichever process waits on it (:class:`WebhookRelay`).

Example::

    import thanx_async as ta
    from thanx_async.redis import RedisJournal, RedisRateLimiter, WebhookRelay

    url = "redis://127.0.0.1:6379/0"
    client = ta.ThanxClient(
        client_id=..., access_token=...,
        limiter=RedisRateLimiter(url, rate_limit=ta.RateLimit()),
    )
    batcher = ta.RewardBatcher(client, journal=RedisJournal(url, name="rewards"))
    relay = WebhookRelay(url, batchers=[batcher])
    receiver = WebhookReceiver(secret=..., batchers=[relay])   # where deliveries land
"""

# Names are imported on first use (PEP 562), as in the top package.

from __future__ import annotations

from typing import TYPE_CHECKING

from thanx_async._lazy import lazy_namespace

if TYPE_CHECKING:
    from thanx_async.redis._journal import RedisJournal
    from thanx_async.redis._limiter import RedisRateLimiter
    from thanx_async.redis._webhook_relay import WebhookRelay

_EXPORTS = {
    "RedisJournal": "thanx_async.redis._journal",
    "RedisRateLimiter": "thanx_async.redis._limiter",
    "WebhookRelay": "thanx_async.redis._webhook_relay",
}

__all__ = ["RedisJournal", "RedisRateLimiter", "WebhookRelay"]

__getattr__, __dir__ = lazy_namespace(__name__, _EXPORTS, __all__, globals())
