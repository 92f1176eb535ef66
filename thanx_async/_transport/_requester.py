"""One request, done right: headers, auth, rate budget, retries, typed errors.

The retry loop lives here rather than in a library because its rules are the
API's: a POST is only retried when it carries an idempotency key, every retry
sends the very same bytes and key, a 401 re-asks the token provider once, and a
429 also informs the rate limiter.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import TypeVar
from urllib.parse import urlencode

import attrs

from thanx_async._config import RETRYABLE_STATUSES, RetryPolicy
from thanx_async._errors import (
    APIError,
    MalformedResponseError,
    ThanxError,
    TransportError,
    api_error_from_response,
)
from thanx_async._serde import DecodeError
from thanx_async._transport._auth import TokenSource
from thanx_async._transport._http import Response, Transport
from thanx_async._transport._ratelimit import RateLimiter

__all__ = ["ACCEPT_VERSION", "Requester", "TransportStats"]

logger = logging.getLogger("thanx_async.transport")

ACCEPT_VERSION = "v4.0"
T = TypeVar("T")


@attrs.define
class TransportStats:
    """Counters of what went over the wire (read by ``RewardBatcher.stats()``)."""

    requests: int = 0
    posts: int = 0
    gets: int = 0
    retries: int = 0
    rate_limited: int = 0
    token_refreshes: int = 0


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date), if usable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class Requester:
    """Sends API requests through auth, the rate limiter and the retry policy."""

    def __init__(
        self,
        *,
        base_url: str,
        client_id: str,
        token: TokenSource,
        user_agent: str,
        timeout: float,
        retry: RetryPolicy,
        limiter: RateLimiter,
        transport: Transport,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._client_id = client_id
        self._token = token
        self._user_agent = user_agent
        self._timeout = timeout
        self._retry = retry
        self._limiter = limiter
        self._transport = transport
        self.stats = TransportStats()

    def _headers(self, token: str, idempotency_key: str | None) -> dict[str, str]:
        headers = {
            "Authorization": f"Bearer {token}",
            "X-ClientId": self._client_id,
            "Accept-Version": ACCEPT_VERSION,
            "Content-Type": "application/json",
            "User-Agent": self._user_agent,
        }
        if idempotency_key is not None:
            headers["X-Idempotency-Key"] = idempotency_key
        return headers

    async def request(
        self,
        method: str,
        path: str,
        decode: Callable[[bytes], T],
        *,
        params: Mapping[str, str | int] | None = None,
        body: bytes | None = None,
        idempotency_key: str | None = None,
        background: bool = False,
    ) -> T:
        """Send a request until it succeeds or fails for good, and decode its body.

        Args:
            method: ``GET`` or ``POST``.
            path: the API path, e.g. ``/partner/scopes``.
            decode: turns a 2xx body into the result (raises DecodeError if it can't).
            params: query parameters.
            body: the exact bytes to send; reused unchanged on every retry.
            idempotency_key: sent as ``X-Idempotency-Key``; a POST without one
                is never retried.
            background: a job poll, which yields rate budget to POSTs.

        Raises:
            APIError: a subclass per status for a final error answer.
            TransportError: no usable answer after the allowed attempts.
            MalformedResponseError: an answer that could not be decoded.
        """
        url = self._base_url + path
        if params:
            url += "?" + urlencode(params)
        # A GET is safe to repeat; a POST only when the key makes the repeat harmless.
        repeatable = method == "GET" or idempotency_key is not None
        loop = asyncio.get_running_loop()
        deadline = None if self._retry.deadline is None else loop.time() + self._retry.deadline
        attempt = 0
        refreshed = False
        while True:
            attempt += 1
            token = await self._token.get()
            timeout = self._timeout
            if deadline is not None:
                timeout = max(0.001, min(timeout, deadline - loop.time()))
            error: ThanxError
            response = await self._attempt(
                method=method,
                path=path,
                url=url,
                token=token,
                idempotency_key=idempotency_key,
                body=body,
                timeout=timeout,
                background=background,
            )
            if isinstance(response, TransportError):
                error = response
            elif 200 <= response.status < 300:
                try:
                    return decode(response.body)
                except DecodeError as exc:
                    error = MalformedResponseError(
                        str(exc), status=response.status, method=method, path=path
                    )
            elif response.status == 401 and self._token.can_refresh and not refreshed:
                refreshed = True
                self.stats.token_refreshes += 1
                logger.info("%s %s -> 401; asking the token provider again", method, path)
                await self._token.refresh(token)
                continue
            else:
                error = api_error_from_response(
                    response.status,
                    response.body,
                    method=method,
                    path=path,
                    retry_after=parse_retry_after(response.headers.get("Retry-After")),
                    idempotent_issue=idempotency_key is not None,
                )
                if response.status not in RETRYABLE_STATUSES:
                    raise error
            wait = self._backoff(attempt, error)
            out_of_time = deadline is not None and loop.time() + wait > deadline
            if not repeatable or attempt >= self._retry.max_attempts or out_of_time:
                raise error
            self.stats.retries += 1
            logger.warning(
                "%s %s failed (%s); retry %d in %.2fs", method, path, error, attempt, wait
            )
            await asyncio.sleep(wait)

    def _backoff(self, attempt: int, error: ThanxError) -> float:
        # Full jitter: spreads retries of many clients instead of synchronising them.
        wait = random.uniform(0.0, self._retry.backoff_cap(attempt))  # noqa: S311 - not crypto
        if isinstance(error, APIError) and error.retry_after is not None:
            wait = max(wait, error.retry_after)
        return wait

    async def _attempt(
        self,
        *,
        method: str,
        path: str,
        url: str,
        token: str,
        idempotency_key: str | None,
        body: bytes | None,
        timeout: float,
        background: bool,
    ) -> Response | TransportError:
        headers = self._headers(token, idempotency_key)
        self.stats.requests += 1
        if method == "POST":
            self.stats.posts += 1
        else:
            self.stats.gets += 1
        started = time.perf_counter()
        try:
            async with self._limiter.slot(background=background) as slot:
                response = await self._transport.send(
                    method, url, headers=headers, body=body, timeout=timeout
                )
                if response.status == 429:
                    self.stats.rate_limited += 1
                    slot.rate_limited(parse_retry_after(response.headers.get("Retry-After")))
        except TransportError as exc:
            logger.debug("%s %s: %s", method, path, exc)
            return TransportError(str(exc), method=method, path=path)
        logger.debug(
            "%s %s -> %d in %.1f ms",
            method,
            path,
            response.status,
            (time.perf_counter() - started) * 1000,
        )
        return response
