"""The one cattrs converter, and the tolerant readers built on it.

Building a converter is slow, so there is exactly one per process. Readers
accept both job shapes seen in public sources (see THANX_API.md, "Where public
sources disagree") and raise :class:`DecodeError` for anything they cannot use;
the client turns that into a :class:`~thanx_async.MalformedResponseError` with
the request context.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeGuard, TypeVar

import cattrs
import orjson
from cattrs.preconf.orjson import make_converter

from thanx_async._models import (
    Campaign,
    IssuanceFailure,
    IssuanceJob,
    IssuanceSummary,
    JobState,
    Pagination,
)

__all__ = [
    "DecodeError",
    "converter",
    "dumps",
    "job_from_dict",
    "job_to_json",
    "read_campaign",
    "read_campaign_page",
    "read_job",
    "read_scopes",
]

T = TypeVar("T")

converter = make_converter()

# Older derived specs name the counters differently; read them as the documented ones.
_JOB_ALIASES = {
    "total_count": "requested_count",
    "success_count": "issued_count",
    "failure_count": "failed_count",
}
_COUNTS = ("total_count", "processed_count", "success_count", "failure_count")


class DecodeError(ValueError):
    """A response body that does not have the shape we need."""


def dumps(obj: Any) -> bytes:
    """Serialise a JSON-able value to compact bytes."""
    return orjson.dumps(obj)


def _without_nulls(data: dict[str, Any]) -> dict[str, Any]:
    # A null for a field we default is the same as its absence.
    return {k: v for k, v in data.items() if v is not None}


def _load(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"body is not JSON ({exc})") from None


def _member(body: bytes, key: str) -> dict[str, Any]:
    data = _load(body)
    if not isinstance(data, dict) or not isinstance(data.get(key), dict):
        raise DecodeError(f"expected a JSON object with an object under {key!r}")
    obj: dict[str, Any] = data[key]
    return obj


def _structure(data: dict[str, Any], cls: type[T]) -> T:
    try:
        return converter.structure(data, cls)
    except (cattrs.BaseValidationError, ValueError, TypeError, KeyError) as exc:
        raise DecodeError(f"cannot read {cls.__name__}: {exc!r}") from None


def _strict_int(value: Any) -> TypeGuard[int]:
    # JSON integers only: a bool, a float (1.9 or 2.0) or a numeric string is not a count.
    return type(value) is int


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _timestamp(value: Any) -> datetime | None:
    # Timestamps are never evidence of an outcome: an unreadable one is just absent.
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _summary(raw: Any, problems: list[str]) -> IssuanceSummary | None:
    if not isinstance(raw, dict):
        problems.append(f"summary is {_short(raw)}")
        return None
    counts = {}
    for name in ("success_count", "failure_count"):
        value = raw.get(name)
        if value is None:
            counts[name] = 0
        elif _strict_int(value):
            counts[name] = value
        else:
            problems.append(f"summary.{name} is {_short(value)}")
            return None
    failures_raw = raw.get("failures")
    if failures_raw is None:
        failures_raw = []
    if not isinstance(failures_raw, list):
        problems.append(f"summary.failures is {_short(failures_raw)}")
        return None
    failures = []
    for position, item in enumerate(failures_raw):
        if not isinstance(item, dict):
            problems.append(f"summary.failures[{position}] is {_short(item)}")
            return None
        index = item.get("identifier_index")
        if not _strict_int(index):
            problems.append(f"summary.failures[{position}].identifier_index is {_short(index)}")
            return None
        failures.append(
            IssuanceFailure(
                identifier_index=index,
                identifier_type=_text(item.get("identifier_type")),
                error=_text(item.get("error")),
            )
        )
    return IssuanceSummary(failures=tuple(failures), **counts)


def job_from_dict(data: dict[str, Any], *, trusted: bool = False) -> IssuanceJob:
    """Read a job object (either public shape) into an :class:`IssuanceJob`.

    Written by hand rather than with the converter because the fields are not
    equal: ``id`` and ``state`` must be strings (else :class:`DecodeError`);
    the counts and the summary are the evidence outcomes are derived from, so
    they must be JSON integers of the right shape, and anything else is named
    in ``IssuanceJob.unreadable`` (the job still parses, its outcomes become
    UNKNOWN); timestamps, names and progress are informative only, and an
    unreadable one is simply absent.

    Args:
        data: the job object.
        trusted: the object is our own journal record (written by
            :func:`job_to_json`), so its ``unreadable`` note is read back too.
    """
    job_id, state = data.get("id"), data.get("state")
    if not isinstance(job_id, str) or not job_id:
        raise DecodeError(f"a job needs a string 'id', got {_short(job_id)}")
    if not isinstance(state, str) or not state:
        raise DecodeError(f"a job needs a string 'state', got {_short(state)}")
    problems: list[str] = []
    counts: dict[str, int] = {}
    for name in _COUNTS:
        value = data.get(name)
        if value is None:
            value = data.get(_JOB_ALIASES[name]) if name in _JOB_ALIASES else None
        if value is None:
            counts[name] = 0
        elif _strict_int(value):
            counts[name] = value
        else:
            problems.append(f"{name} is {_short(value)}")
            counts[name] = 0
    progress = data.get("progress_percent")
    raw_summary = data.get("summary")
    summary = None if raw_summary is None else _summary(raw_summary, problems)
    if trusted and isinstance(data.get("unreadable"), str):
        problems.insert(0, data["unreadable"])
    return IssuanceJob(
        id=job_id,
        state=JobState(state),
        campaign_id=_text(data.get("campaign_id")),
        variant_id=_text(data.get("variant_id")),
        progress_percent=progress if _strict_int(progress) else 0,
        created_at=_timestamp(data.get("created_at")),
        started_at=_timestamp(data.get("started_at")),
        completed_at=_timestamp(data.get("completed_at")),
        summary=summary,
        unreadable="; ".join(problems) or None,
        **counts,
    )


def job_to_json(job: IssuanceJob) -> bytes:
    """A job as JSON (what the journal keeps); :func:`job_from_dict` reads it back."""
    return orjson.dumps(converter.unstructure(job))


def read_job(body: bytes) -> IssuanceJob:
    """Read ``{"issuance_job": {...}}``."""
    return job_from_dict(_member(body, "issuance_job"))


def _campaign(data: Any) -> Campaign:
    if not isinstance(data, dict):
        raise DecodeError("a campaign is not a JSON object")
    clean = _without_nulls(data)
    if isinstance(clean.get("variants"), list):
        clean["variants"] = [
            _without_nulls(v) if isinstance(v, dict) else v for v in clean["variants"]
        ]
    return _structure(clean, Campaign)


def read_campaign(body: bytes) -> Campaign:
    """Read ``{"campaign": {...}}``."""
    return _campaign(_member(body, "campaign"))


def read_campaign_page(body: bytes) -> tuple[list[Campaign], Pagination]:
    """Read a page of ``GET /partner/campaigns`` (``total_page`` also read as ``total_pages``)."""
    data = _load(body)
    if not isinstance(data, dict) or not isinstance(data.get("campaigns"), list):
        raise DecodeError("expected a JSON object with a 'campaigns' list")
    campaigns = [_campaign(item) for item in data["campaigns"]]
    raw_page = data.get("pagination")
    page = _without_nulls(raw_page) if isinstance(raw_page, dict) else {}
    if "total_page" in page and "total_pages" not in page:
        page["total_pages"] = page["total_page"]
    return campaigns, _structure(page, Pagination)


def read_scopes(body: bytes) -> list[str]:
    """Read ``{"scopes": [...]}``."""
    data = _load(body)
    scopes = data.get("scopes") if isinstance(data, dict) else None
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise DecodeError("expected a JSON object with a 'scopes' list of strings")
    return list(scopes)
