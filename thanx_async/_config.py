"""Configuration values: base URLs, rate limits, retry policy."""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import urlsplit

import attrs

__all__ = ["PRODUCTION_URL", "SANDBOX_URL", "RateLimit", "RetryPolicy", "check_base_url"]

SANDBOX_URL = "https://api.thanxsandbox.com"
PRODUCTION_URL = "https://api.thanx.com"

#: Statuses that mean "try again later"; everything else is final.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


def _positive_rate(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{attribute.name} must be a number, got {type(value).__name__}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{attribute.name} must be a finite number > 0, got {value!r}")


def _positive_count(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"{attribute.name} must be a whole number of requests (an int), got {value!r}"
        )
    if value <= 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value!r}")


@attrs.frozen(kw_only=True)
class RateLimit:
    """The per-credential request budget, enforced on our side so the server never says 429.

    Thanx allows 5 requests per second and 2,000 requests per 15 minutes per
    credential; every request counts, polls included. Both windows are enforced
    with a sliding log. A request is counted from the moment it is sent until a
    full window after its response arrived, because the server stamps it on
    arrival, somewhere in between.

    ``per_second`` may be fractional, for a process that owns a share of the
    credential's budget (e.g. ``per_second=0.5`` for one of ten workers). The
    rule, shared by every limiter of this package (see :attr:`short_window`):

    - an integral ``per_second`` n (``5`` or ``5.0``) admits n requests in any
      window of ``second`` seconds;
    - a non-integral ``per_second`` r admits one request in any window of
      ``second / r`` seconds, so any ``second``-long window holds at most
      ``ceil(r)`` requests (``0.5``: one request every 2 seconds; ``2.5``: one
      every 0.4 seconds).

    ``per_window`` is a whole number of requests.

    Attributes:
        per_second: requests allowed in any short window (see above for fractions).
        per_window: requests allowed in any long window (an int).
        window: length of the long window in seconds (900 = 15 minutes). It also
            caps any ``Retry-After`` the server sends.
        second: length of the short window in seconds. Only tests and
            emulators with scaled-down limits change it.

    Raises:
        TypeError: ``per_window`` is not an int, or a value is not a number.
        ValueError: a value is not finite and > 0.

    Example:
        >>> RateLimit(per_second=5, per_window=2000, window=900.0)
        RateLimit(per_second=5, per_window=2000, window=900.0, second=1.0)
        >>> RateLimit(per_second=0.5, per_window=250).short_window
        (2.0, 1)
    """

    per_second: float = attrs.field(default=5, validator=_positive_rate)
    per_window: int = attrs.field(default=2000, validator=_positive_count)
    window: float = attrs.field(default=900.0, validator=_positive_rate)
    second: float = attrs.field(default=1.0, validator=_positive_rate)

    @property
    def short_window(self) -> tuple[float, int]:
        """The short window the limiter enforces, as ``(length in seconds, requests)``.

        ``(second, per_second)`` for an integral ``per_second``, else
        ``(second / per_second, 1)``.
        """
        if float(self.per_second).is_integer():
            return self.second, int(self.per_second)
        return self.second / self.per_second, 1


def low_water(limit: RateLimit) -> int:
    """Requests left in the long window below which it is "nearly spent" (the budget binds).

    A short window's worth, when the long window is the tighter one; 0 when
    it never binds before the short one (both unlimited, say): otherwise one
    request would make a budget of a billion "nearly spent".
    """
    short = limit.short_window[1]
    return short if short < limit.per_window else 0


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How often and how long to retry a request that failed for a retryable reason.

    Retryable: connection errors, timeouts, 429, 500, 502, 503, 504. Waits grow
    exponentially with full jitter (a random wait between 0 and
    ``min(max_backoff, initial_backoff * 2**attempt)``). A POST is only retried
    with an idempotency key, and every retry sends the same bytes and key.

    Attributes:
        max_attempts: attempts in all, the first included (1 disables retries).
        initial_backoff: the cap of the first wait, in seconds.
        max_backoff: the cap of any single wait, in seconds.
        deadline: overall seconds for one call as a whole: every attempt, the
            backoff between them, and the time spent waiting for rate budget or
            for a token provider (``None`` for no overall bound). A call that
            runs out of it while waiting for budget raises ``TransportError``
            saying nothing was sent. Note that while the long rate window is
            exhausted a request can wait up to that window (15 minutes) for
            budget: a deadline shorter than that can end such calls.
    """

    max_attempts: int = attrs.field(default=6, validator=attrs.validators.gt(0))
    initial_backoff: float = attrs.field(default=0.5, validator=attrs.validators.ge(0))
    max_backoff: float = attrs.field(default=30.0, validator=attrs.validators.ge(0))
    deadline: float | None = 300.0

    def backoff_cap(self, attempt: int) -> float:
        """The largest wait before retry number ``attempt`` (1 for the first retry)."""
        return float(min(self.max_backoff, self.initial_backoff * 2 ** (attempt - 1)))


def check_base_url(base_url: str) -> str:
    """``base_url`` without a trailing slash; refuse one that cannot be requested.

    Raises:
        ValueError: not ``http(s)://`` with a host (optionally a port and a path
            prefix), or with a query, fragment or credentials.
        TypeError: not a string.
    """
    if not isinstance(base_url, str):
        raise TypeError(f"base_url must be a string, got {type(base_url).__name__}")
    try:
        parts = urlsplit(base_url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise ValueError(f"base_url {base_url!r} is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(
            f"base_url {base_url!r} must start with https:// (or http://), e.g. {SANDBOX_URL!r}"
        )
    if not host:
        raise ValueError(f"base_url {base_url!r} has no host")
    if parts.query or parts.fragment or "@" in parts.netloc:
        raise ValueError(
            f"base_url {base_url!r} must be scheme, host and optional path only "
            "(no query, fragment or credentials)"
        )
    return base_url.rstrip("/")
