"""Configuration values: base URLs, rate limits, retry policy."""

from __future__ import annotations

import attrs

__all__ = ["PRODUCTION_URL", "SANDBOX_URL", "RateLimit", "RetryPolicy"]

SANDBOX_URL = "https://api.thanxsandbox.com"
PRODUCTION_URL = "https://api.thanx.com"

#: Statuses that mean "try again later"; everything else is final.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


@attrs.frozen(kw_only=True)
class RateLimit:
    """The per-credential request budget, enforced on our side so the server never says 429.

    Thanx allows 5 requests per second and 2,000 requests per 15 minutes per
    credential; every request counts, polls included. Both windows are enforced
    with a sliding log. A request is counted from the moment it is sent until a
    full window after its response arrived, because the server stamps it on
    arrival, somewhere in between.

    Attributes:
        per_second: requests allowed in any short window.
        per_window: requests allowed in any long window.
        window: length of the long window in seconds (900 = 15 minutes).
        second: length of the short window in seconds. Only tests and
            emulators with scaled-down limits change it.

    Example:
        >>> RateLimit(per_second=5, per_window=2000, window=900.0)
        RateLimit(per_second=5, per_window=2000, window=900.0, second=1.0)
    """

    per_second: int = attrs.field(default=5, validator=attrs.validators.gt(0))
    per_window: int = attrs.field(default=2000, validator=attrs.validators.gt(0))
    window: float = attrs.field(default=900.0, validator=attrs.validators.gt(0))
    second: float = attrs.field(default=1.0, validator=attrs.validators.gt(0))


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
        deadline: overall seconds for all attempts of one request together
            (``None`` for no overall bound).
    """

    max_attempts: int = attrs.field(default=6, validator=attrs.validators.gt(0))
    initial_backoff: float = attrs.field(default=0.5, validator=attrs.validators.ge(0))
    max_backoff: float = attrs.field(default=30.0, validator=attrs.validators.ge(0))
    deadline: float | None = 300.0

    def backoff_cap(self, attempt: int) -> float:
        """The largest wait before retry number ``attempt`` (1 for the first retry)."""
        return float(min(self.max_backoff, self.initial_backoff * 2 ** (attempt - 1)))
