"""The one cattrs converter, and the tolerant readers built on it.

Building a converter is slow, so there is exactly one per process. Readers
accept both job shapes seen in public sources (see THANX_API.md, "Where public
sources disagree") and raise :class:`DecodeError` for anything they cannot use;
the client turns that into a :class:`~thanx_async.MalformedResponseError` with
the request context.
"""

from __future__ import annotations

from typing import Any, TypeVar

import cattrs
import orjson
from cattrs.preconf.orjson import make_converter

from thanx_async._models import Campaign, IssuanceJob, Pagination

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

# Older derived specs name the counters differently; map them onto the documented ones.
_JOB_ALIASES = {
    "requested_count": "total_count",
    "issued_count": "success_count",
    "failed_count": "failure_count",
}


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


def job_from_dict(data: dict[str, Any]) -> IssuanceJob:
    """Structure a job object (either public shape) into an :class:`IssuanceJob`."""
    clean = _without_nulls(data)
    for alias, name in _JOB_ALIASES.items():
        if alias in clean and name not in clean:
            clean[name] = clean[alias]
    if isinstance(clean.get("summary"), dict):
        summary = _without_nulls(clean["summary"])
        failures = summary.get("failures")
        if isinstance(failures, list):
            summary["failures"] = [
                _without_nulls(f) if isinstance(f, dict) else f for f in failures
            ]
        clean["summary"] = summary
    return _structure(clean, IssuanceJob)


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
