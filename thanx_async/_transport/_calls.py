"""The bookkeeping of one call across its attempts, and ``Retry-After`` parsing.

Kept apart from :mod:`._requester` so the retry loop reads as a loop.
"""

from __future__ import annotations

import email.utils
import math
import time

import attrs

from thanx_async._errors import ThanxError, TransportError

__all__ = ["Call", "NotSent", "parse_retry_after"]


def parse_retry_after(value: str | None, cap: float = math.inf) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date), if usable.

    The result is finite, at least 0 and at most ``cap``: ``inf``, ``1e400`` or
    a date in 2099 give ``cap``; ``nan`` and garbage give ``None``.
    """
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
            seconds = when.timestamp() - time.time()
        except (TypeError, ValueError, OverflowError, OSError):
            return None
    if math.isnan(seconds):
        return None
    return min(max(0.0, seconds), cap)


class NotSent(Exception):  # noqa: N818 - an internal signal, never seen by users
    """The deadline passed before an attempt could be sent (waiting for a token or budget)."""

    def __init__(self, waited_for: str, waited: float) -> None:
        super().__init__(waited_for)
        self.waited_for = waited_for
        self.waited = waited


@attrs.define
class Call:
    """One call of :meth:`Requester.request` across its attempts."""

    method: str
    shown: str  # the path as logs and errors show it (redacted)
    idempotency_key: str | None
    deadline: float | None  # loop time
    template: str | None = None  # the path's template, for telemetry (url.template)
    attempt: int = 0
    last: ThanxError | None = None  # the error of the previous attempt
    fate_unknown: bool = False  # an attempt of this POST may have been processed
    waited: float = 0.0  # seconds the current attempt waited for rate budget
    error_type: str | None = None  # the last attempt's error, as telemetry's error.type

    def failed(self, error: ThanxError) -> None:
        """Record an attempt that will be retried."""
        self.last = error
        # Only a connection that never opened proves an attempt did nothing.
        if self.method == "POST" and not (
            isinstance(error, TransportError) and not error.may_have_succeeded
        ):
            self.fate_unknown = True
