"""Reading a delivery body: the documented envelope ``{"event", "timestamp", "data"}``.

Reading is strict where the SDK relies on a value and tolerant elsewhere:

- The fields THANX_API.md lists for an event are type-checked when present:
  a job id that is not a string, a count that is negative or not an integer,
  ``failures`` that is not a list of ``{user_identifier, reason}`` objects
  raise :class:`WebhookPayloadError`. A half-read ``failures`` list must
  never let someone who was not rewarded be counted as rewarded.
- Missing or ``null`` optional fields read as ``None``; unknown fields are
  ignored; an unknown job ``state`` keeps its raw value (:class:`JobState`).
- Descriptive values read tolerantly: a date that does not parse, or a
  ``campaign`` object of an unexpected shape, reads as ``None``.
- An unknown ``event`` is never an error: it becomes :class:`UnknownEvent`.

Every event keeps the raw ``data`` object it was read from.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from thanx_async._models import Campaign, JobState, Variant
from thanx_async.webhooks._errors import WebhookPayloadError
from thanx_async.webhooks._events import (
    BatchFailure,
    RewardBatchCompleted,
    RewardIssued,
    UnknownEvent,
    WebhookEvent,
)
from thanx_async.webhooks._signature import verify_signature

__all__ = ["decode_event", "parse_event"]


def _fail(event: str, field: str, problem: str) -> WebhookPayloadError:
    return WebhookPayloadError(f"{event}: {field} {problem}")


def _required_str(data: Mapping[str, Any], event: str, field: str, where: str = "") -> str:
    value = data.get(field)
    if not isinstance(value, str) or not value:
        raise _fail(event, where + field, "is missing or not a non-empty string")
    return value


def _optional_str(data: Mapping[str, Any], event: str, field: str, where: str = "") -> str | None:
    value = data.get(field)
    if value is None or isinstance(value, str):
        return value
    raise _fail(event, where + field, f"is a {type(value).__name__}, not a string")


def _count(data: Mapping[str, Any], event: str, field: str, where: str = "") -> int | None:
    value = data.get(field)
    if value is None:
        return None
    # bool is an int in Python, never a count in JSON.
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _fail(event, where + field, "is not a non-negative integer")
    return value


def _date(value: Any) -> datetime | None:
    """An ISO 8601 string (or epoch seconds) as an aware datetime; ``None`` if unreadable."""
    try:
        if isinstance(value, str):
            moment = datetime.fromisoformat(value)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            moment = datetime.fromtimestamp(value, UTC)
        else:
            return None
    except (ValueError, OverflowError, OSError):
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _object(data: Mapping[str, Any], event: str, field: str) -> Mapping[str, Any] | None:
    value = data.get(field)
    if value is None or isinstance(value, dict):
        return value
    raise _fail(event, field, f"is a {type(value).__name__}, not an object")


def _failures(data: Mapping[str, Any], event: str) -> tuple[BatchFailure, ...]:
    raw = data.get("failures")
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _fail(event, "failures", f"is a {type(raw).__name__}, not a list")
    failures = []
    for position, item in enumerate(raw):
        where = f"failures[{position}]"
        if not isinstance(item, dict):
            raise _fail(event, where, "is not an object")
        failures.append(
            BatchFailure(
                user_identifier=_required_str(item, event, "user_identifier", f"{where}."),
                reason=_loose_str(item.get("reason")),
            )
        )
    return tuple(failures)


def _loose_str(value: Any) -> str | None:
    """A descriptive text: kept if it is a string, ``None`` otherwise."""
    return value if isinstance(value, str) else None


# A job's 10,000 reward.issued deliveries carry the same campaign: reading it
# (four dates, two objects) once per distinct JSON form, not per delivery,
# takes a third off the cost of a delivery.
_CAMPAIGN_CACHE: dict[bytes, Campaign | None] = {}
_CAMPAIGN_CACHE_SIZE = 256


def _campaign(value: Any) -> Campaign | None:
    """The ``campaign`` of ``reward.issued`` (with one ``variant``), or ``None`` if unreadable."""
    if not isinstance(value, dict):
        return None
    key = orjson.dumps(value)  # exact: 1, 1.0 and true differ here, not as dict keys
    try:
        return _CAMPAIGN_CACHE[key]
    except KeyError:
        pass
    campaign = _read_campaign(value)
    if len(_CAMPAIGN_CACHE) >= _CAMPAIGN_CACHE_SIZE:
        _CAMPAIGN_CACHE.clear()
    _CAMPAIGN_CACHE[key] = campaign
    return campaign


def _read_campaign(value: dict[str, Any]) -> Campaign | None:
    if not isinstance(value.get("id"), str):
        return None
    raw_variant = value.get("variant")
    variants: tuple[Variant, ...] = ()
    if isinstance(raw_variant, dict) and isinstance(raw_variant.get("id"), str):
        variants = (
            Variant(
                id=raw_variant["id"],
                name=_loose_str(raw_variant.get("name")),
                reward_template_id=_loose_str(raw_variant.get("reward_template_id")),
            ),
        )
    return Campaign(
        id=value["id"],
        name=_loose_str(value.get("name")),
        objective=_loose_str(value.get("objective")),
        fine_print=_loose_str(value.get("fine_print")),
        start_at=_date(value.get("start_at")),
        end_at=_date(value.get("end_at")),
        redeemable_from=_date(value.get("redeemable_from")),
        redeemable_to=_date(value.get("redeemable_to")),
        time_zone=_loose_str(value.get("time_zone")),
        variants=variants,
    )


# -- events -----------------------------------------------------------------------


def _batch_completed(data: Mapping[str, Any], timestamp: datetime | None) -> RewardBatchCompleted:
    event = RewardBatchCompleted.event
    return RewardBatchCompleted(
        issuance_job_id=_required_str(data, event, "issuance_job_id"),
        state=JobState(_required_str(data, event, "state")),
        merchant_id=_optional_str(data, event, "merchant_id"),
        total_count=_count(data, event, "total_count"),
        issued_count=_count(data, event, "issued_count"),
        failed_count=_count(data, event, "failed_count"),
        failures=_failures(data, event),
        timestamp=timestamp,
        data=data,
    )


def _reward_issued(data: Mapping[str, Any], timestamp: datetime | None) -> RewardIssued:
    event = RewardIssued.event
    identifier = _object(data, event, "identifier") or {}
    return RewardIssued(
        issuance_job_id=_required_str(data, event, "issuance_job_id"),
        merchant_id=_optional_str(data, event, "merchant_id"),
        reward_id=_optional_str(data, event, "reward_id"),
        identifier_type=_optional_str(identifier, event, "type", "identifier."),
        identifier_index=_count(identifier, event, "index", "identifier."),
        user_id=_optional_str(data, event, "user_id"),
        state=_optional_str(data, event, "state"),
        expires_at=_date(data.get("expires_at")),
        campaign=_campaign(data.get("campaign")),
        timestamp=timestamp,
        data=data,
    )


_DECODERS: dict[str, Callable[[Mapping[str, Any], datetime | None], WebhookEvent]] = {
    RewardBatchCompleted.event: _batch_completed,
    RewardIssued.event: _reward_issued,
}


def decode_event(raw_body: bytes) -> WebhookEvent:
    """Read a delivery's body **without verifying it**; :func:`parse_event` verifies first.

    Raises:
        WebhookPayloadError: the body is not JSON, not an envelope, or a known
            event with unusable fields.
    """
    try:
        envelope = orjson.loads(raw_body)
    except orjson.JSONDecodeError:
        raise WebhookPayloadError("the body is not valid JSON") from None
    if not isinstance(envelope, dict):
        raise WebhookPayloadError(f"the body is a JSON {type(envelope).__name__}, not an object")
    name = envelope.get("event")
    if not isinstance(name, str) or not name:
        raise WebhookPayloadError("the envelope has no 'event' name")
    timestamp = _date(envelope.get("timestamp"))
    data = envelope.get("data")
    decoder = _DECODERS.get(name)
    if decoder is None:
        return UnknownEvent(event=name, timestamp=timestamp, data=data)
    if not isinstance(data, dict):
        raise WebhookPayloadError(f"{name}: 'data' is missing or not an object")
    return decoder(data, timestamp)


def parse_event(
    raw_body: bytes, signature: str | None, secret: str | Sequence[str]
) -> WebhookEvent:
    """Verify a delivery, then read it into a typed event.

    Nothing of the body is read before its signature is checked.

    Args:
        raw_body: the request body exactly as received, as bytes.
        signature: the ``X-Thanx-Signature`` header (``None`` if absent).
        secret: the webhook secret, or several during a rotation.

    Returns:
        A :class:`RewardBatchCompleted`, a :class:`RewardIssued`, or an
        :class:`UnknownEvent` for any other event name.

    Raises:
        InvalidSignatureError: the signature is missing or wrong.
        WebhookPayloadError: correctly signed, but not a readable webhook.

    Example:
        >>> event = parse_event(body, request.headers.get("X-Thanx-Signature"), secret)
        >>> if isinstance(event, RewardBatchCompleted):
        ...     failed = {f.user_identifier for f in event.failures}
    """
    verify_signature(raw_body, signature, secret)
    return decode_event(raw_body)
