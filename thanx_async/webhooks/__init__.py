"""Thanx webhooks: verify signed deliveries, read typed events, feed them to batchers.

Thanx can push ``reward_batch.completed`` once per issuance job (and
``reward.issued`` once per reward). Each delivery carries
``X-Thanx-Signature``, the lowercase hex HMAC-SHA256 of the raw body keyed
with your webhook secret. Thanx answers no retries, so a webhook is a fast
path; polling stays the safety net.

Example:
    >>> from thanx_async.webhooks import WebhookReceiver, parse_event
    >>> receiver = WebhookReceiver(secret=os.environ["THANX_WEBHOOK_SECRET"],
    ...                            batchers=[batcher])
    >>> app.router.add_post("/webhooks/thanx", receiver.aiohttp_handler)   # aiohttp
    >>> fastapi_app.add_route("/webhooks/thanx", receiver.asgi_app, methods=["POST"])

    >>> event = parse_event(raw_body, headers.get("X-Thanx-Signature"), secret)
"""

# Names are imported on first use (PEP 562), like the top-level package.

from __future__ import annotations

from typing import TYPE_CHECKING

from thanx_async._lazy import lazy_namespace

if TYPE_CHECKING:
    from thanx_async.webhooks._asgi import AsgiApp
    from thanx_async.webhooks._decode import parse_event
    from thanx_async.webhooks._errors import InvalidSignatureError, WebhookPayloadError
    from thanx_async.webhooks._events import (
        BatchFailure,
        RewardBatchCompleted,
        RewardIssued,
        UnknownEvent,
        WebhookEvent,
    )
    from thanx_async.webhooks._receiver import WebhookReceiver, WebhookStats
    from thanx_async.webhooks._signature import (
        SIGNATURE_HEADER,
        compute_signature,
        verify_signature,
    )
    from thanx_async.webhooks._sinks import WebhookSink

_EXPORTS = {
    "AsgiApp": "thanx_async.webhooks._asgi",
    "BatchFailure": "thanx_async.webhooks._events",
    "InvalidSignatureError": "thanx_async.webhooks._errors",
    "RewardBatchCompleted": "thanx_async.webhooks._events",
    "RewardIssued": "thanx_async.webhooks._events",
    "SIGNATURE_HEADER": "thanx_async.webhooks._signature",
    "UnknownEvent": "thanx_async.webhooks._events",
    "WebhookEvent": "thanx_async.webhooks._events",
    "WebhookPayloadError": "thanx_async.webhooks._errors",
    "WebhookReceiver": "thanx_async.webhooks._receiver",
    "WebhookSink": "thanx_async.webhooks._sinks",
    "WebhookStats": "thanx_async.webhooks._receiver",
    "compute_signature": "thanx_async.webhooks._signature",
    "parse_event": "thanx_async.webhooks._decode",
    "verify_signature": "thanx_async.webhooks._signature",
}

__all__ = [
    "SIGNATURE_HEADER",
    "AsgiApp",
    "BatchFailure",
    "InvalidSignatureError",
    "RewardBatchCompleted",
    "RewardIssued",
    "UnknownEvent",
    "WebhookEvent",
    "WebhookPayloadError",
    "WebhookReceiver",
    "WebhookSink",
    "WebhookStats",
    "compute_signature",
    "parse_event",
    "verify_signature",
]


__getattr__, __dir__ = lazy_namespace(__name__, _EXPORTS, __all__, globals())
