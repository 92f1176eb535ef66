"""Shared helpers for the webhook tests: signed bodies in the documented shapes, fake sinks."""

from __future__ import annotations

from typing import Any

import orjson

from thanx_async.webhooks import WebhookEvent, compute_signature

SECRET = "whsec-test-0f1e2d3c"
OTHER_SECRET = "whsec-test-rotated-9a8b"

#: THANX_API.md's reward_batch.completed example (the documented shape).
COMPLETED_DATA: dict[str, Any] = {
    "issuance_job_id": "job_xyz789",
    "merchant_id": "mer_abc123",
    "state": "completed",
    "total_count": 2,
    "issued_count": 1,
    "failed_count": 1,
    "failures": [{"user_identifier": "+14155551234", "reason": "User not found"}],
}

#: Thanx's reward.issued example (the documented shape).
ISSUED_DATA: dict[str, Any] = {
    "issuance_job_id": "job_xyz789",
    "merchant_id": "mer_abc123",
    "reward_id": "rwd_abc123",
    "identifier": {"type": "email", "index": 0},
    "user_id": "usr_def456",
    "state": "active",
    "expires_at": "2025-09-30T23:59:59Z",
    "campaign": {
        "id": "camp_abc123",
        "name": "Summer Free Coffee",
        "objective": "Re-engage lapsed customers",
        "start_at": "2025-06-01T00:00:00Z",
        "end_at": "2025-08-31T23:59:59Z",
        "redeemable_from": "2025-06-01T00:00:00Z",
        "redeemable_to": "2025-09-30T23:59:59Z",
        "time_zone": "America/Los_Angeles",
        "fine_print": "Limit one per customer",
        "variant": {"id": "var_treat1", "name": "Treatment", "reward_template_id": "abc123def456"},
    },
}


def envelope(event: str, data: Any, timestamp: Any = "2025-06-15T10:30:15Z") -> bytes:
    """A compact JSON delivery body."""
    body: dict[str, Any] = {"event": event, "data": data}
    if timestamp is not None:
        body["timestamp"] = timestamp
    return orjson.dumps(body)


def signed(body: bytes, secret: str = SECRET) -> tuple[bytes, str]:
    """``body`` and its signature."""
    return body, compute_signature(body, secret)


class RecordingSink:
    """A WebhookSink that records every event and claims those of its jobs."""

    def __init__(self, jobs: frozenset[str] = frozenset({"job_xyz789"})) -> None:
        self.jobs = jobs
        self.events: list[WebhookEvent] = []

    def receive_webhook(self, event: WebhookEvent) -> bool:
        self.events.append(event)
        return getattr(event, "issuance_job_id", None) in self.jobs


class BrokenSink:
    """A WebhookSink whose every call raises."""

    def __init__(self) -> None:
        self.calls = 0

    def receive_webhook(self, event: WebhookEvent) -> bool:
        self.calls += 1
        raise RuntimeError("sink bug")
