"""One request, done right: headers, auth, rate budget, retries, typed errors.

The retry loop lives here rather than in a library because its rules are the
API's: a POST is only retried when it carries an idempotency key, every retry
sends the very same bytes and key, a 401 re-asks the token provider once, and a
429 also informs the rate limiter.

Every call is bounded: :attr:`RetryPolicy.deadline` covers all of it, the time
spent waiting for a token and for rate budget included, and a ``Retry-After``
is capped at the long rate window. The client's tokens are cut out of every
error text and log line made here.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from thanx_async._telemetry import Telemetry
from thanx_async._transport._auth import TokenError, TokenSource
from thanx_async._transport._calls import Call, NotSent, parse_retry_after
from thanx_async._transport._http import Response, Transport, error_type
from thanx_async._transport._ratelimit import RateLimiter, Slot

__all__ = ["ACCEPT_VERSION", "Requester", "TransportStats", "parse_retry_after"]

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


class Requester:
    """Sends API requests through auth, the rate limiter and the retry policy.

    Args:
        base_url: scheme and host (and an optional path prefix).
        client_id: the ``X-ClientId``.
        token: where the bearer token comes from.
        user_agent: the ``User-Agent``.
        timeout: seconds for one attempt.
        retry: attempts, backoff and the overall deadline of one call.
        limiter: the rate limiter every attempt goes through.
        transport: the wire.
        max_retry_after: the cap on any ``Retry-After`` (the long rate window).
        telemetry: where spans and metrics go (by default the global providers').
    """

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
        max_retry_after: float = 900.0,
        telemetry: Telemetry | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._client_id = client_id
        self._token = token
        self._user_agent = user_agent
        self._timeout = timeout
        self._retry = retry
        self._limiter = limiter
        self._transport = transport
        self._max_retry_after = max_retry_after
        self.stats = TransportStats()
        self.telemetry = telemetry or Telemetry(base_url=base_url)

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
        template: str | None = None,
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
            template: the path with its variable parts named
                (``/partner/issuance_jobs/{job_id}``), for telemetry.

        Raises:
            APIError: a subclass per status for a final error answer.
            TransportError: no usable answer after the allowed attempts, or the
                deadline passed (also while waiting for rate budget).
            MalformedResponseError: a 2xx answer that could not be decoded (or
                was over the size cap), after the allowed attempts.
        """
        url = self._base_url + path
        if params:
            url += "?" + urlencode(params)
        loop = asyncio.get_running_loop()
        call = Call(
            method=method,
            shown=self._token.redact(path),  # a path built from a server's job id
            idempotency_key=idempotency_key,
            deadline=None if self._retry.deadline is None else loop.time() + self._retry.deadline,
            template=template,
        )
        # A GET is safe to repeat; a POST only when the key makes the repeat harmless.
        repeatable = method == "GET" or idempotency_key is not None
        refreshed = False
        stale: str | None = None  # the token a 401 refused, to refresh before the next attempt
        while True:
            call.attempt += 1
            try:
                token, response = await self._attempt(
                    call, url=url, body=body, background=background, stale=stale
                )
            except NotSent as exc:
                raise self._not_sent(call, exc) from None
            except TokenError as exc:
                sent = "nothing was sent" if call.last is None else "an earlier attempt was sent"
                raise TransportError(
                    f"{exc}; {sent}",
                    method=method,
                    path=call.shown,
                    may_have_succeeded=call.fate_unknown,
                ) from None
            stale = None
            error: ThanxError
            if isinstance(response, TransportError):
                error = response
            elif 200 <= response.status < 300:
                reason = "the body is larger than the transport's size cap"
                if not response.truncated:
                    try:
                        return decode(response.body)
                    except DecodeError as exc:
                        reason = str(exc)
                error = self._malformed(call, reason, response.status)
                call.error_type = "malformed_response"
            elif response.status == 401 and self._token.can_refresh and not refreshed:
                refreshed = True
                self.stats.token_refreshes += 1
                logger.info("%s %s -> 401; asking the token provider again", method, call.shown)
                stale = token
                continue
            else:
                error = self._api_error(call, response)
                if response.status not in RETRYABLE_STATUSES:
                    raise error
            wait = self._backoff(call.attempt, error)
            out_of_time = call.deadline is not None and loop.time() + wait > call.deadline
            if not repeatable or call.attempt >= self._retry.max_attempts or out_of_time:
                raise error
            call.failed(error)
            self.stats.retries += 1
            self.telemetry.retried(method, call.template, call.error_type or "_OTHER")
            logger.warning(
                "%s %s failed (%s); retry %d in %.2fs",
                method, call.shown, error, call.attempt, wait,
            )  # fmt: skip
            await asyncio.sleep(wait)

    def _api_error(self, call: Call, response: Response) -> APIError:
        return api_error_from_response(
            response.status,
            response.body,
            method=call.method,
            path=call.shown,
            retry_after=parse_retry_after(
                response.headers.get("Retry-After"), self._max_retry_after
            ),
            idempotent_issue=call.idempotency_key is not None,
            redact=self._token.redact,
            secret_size=self._token.longest_secret,
        )

    def _malformed(self, call: Call, reason: str, status: int) -> MalformedResponseError:
        posted = call.method == "POST"
        consequence = ""
        if posted:
            consequence = "the server answered 2xx, so the request may have been processed"
            if call.idempotency_key is not None:
                consequence += "; re-sending it with the same idempotency key is safe"
        return MalformedResponseError(
            self._token.redact(reason)[:500],
            status=status,
            method=call.method,
            path=call.shown,
            may_have_succeeded=posted,
            consequence=consequence,
        )

    def _not_sent(self, call: Call, exc: NotSent) -> TransportError:
        waited = f"waited {exc.waited:.1f}s for {exc.waited_for} until the call's deadline passed"
        if call.last is None:
            message = f"{waited}; nothing was sent"
        else:
            message = (
                f"{waited}; retry {call.attempt - 1} was not sent (the last attempt: {call.last})"
            )
        logger.debug("%s %s: %s", call.method, call.shown, message)
        return TransportError(
            message, method=call.method, path=call.shown, may_have_succeeded=call.fate_unknown
        )

    def _backoff(self, attempt: int, error: ThanxError) -> float:
        # Full jitter: spreads retries of many clients instead of synchronising them.
        wait = random.uniform(0.0, self._retry.backoff_cap(attempt))  # noqa: S311 - not crypto
        if isinstance(error, APIError) and error.retry_after is not None:
            # Capped when parsed; min() again for an APIError built by other code.
            wait = max(wait, min(error.retry_after, self._max_retry_after))
        return wait

    async def _ready(
        self,
        stack: contextlib.AsyncExitStack,
        call: Call,
        *,
        stale: str | None,
        background: bool,
    ) -> tuple[str, Slot]:
        """A token and a granted slot, within the deadline; raises NotSent past it."""
        loop = asyncio.get_running_loop()
        started = budget_from = loop.time()
        waiting_for = "a token from the access token provider"
        bound = asyncio.timeout_at(call.deadline)
        try:
            async with bound:
                if stale is None:
                    token = await self._token.get()
                else:
                    token = await self._token.refresh(stale)
                waiting_for = "rate budget"
                budget_from = loop.time()
                # Cancelled by the deadline, the limiter gives back its place (or grant).
                slot = await stack.enter_async_context(self._limiter.slot(background=background))
        except TimeoutError:
            if not bound.expired():
                raise  # not our deadline: someone else's timeout, passed on unchanged
            if waiting_for == "rate budget":
                self.telemetry.budget_waited(
                    call.method, call.template, loop.time() - budget_from, granted=False
                )
            raise NotSent(waiting_for, loop.time() - started) from None
        call.waited = loop.time() - budget_from
        self.telemetry.budget_waited(call.method, call.template, call.waited, granted=True)
        return token, slot

    async def _attempt(
        self,
        call: Call,
        *,
        url: str,
        body: bytes | None,
        background: bool,
        stale: str | None,
    ) -> tuple[str, Response | TransportError]:
        loop = asyncio.get_running_loop()
        method, shown, deadline = call.method, call.shown, call.deadline
        async with contextlib.AsyncExitStack() as stack:
            token, slot = await self._ready(stack, call, stale=stale, background=background)
            headers = self._headers(token, call.idempotency_key)
            timeout = self._timeout
            if deadline is not None:
                timeout = max(0.001, min(timeout, deadline - loop.time()))
            self.stats.requests += 1
            if method == "POST":
                self.stats.posts += 1
            else:
                self.stats.gets += 1
            query = url.find("?")  # its values are shown as REDACTED, its keys are ours
            measured = self.telemetry.attempt(
                method,
                call.template,
                shown if query < 0 else shown + url[query:],
                resend_count=call.attempt - 1,
                waited=call.waited,
            )
            started = time.perf_counter()
            try:
                response = await self._transport.send(
                    method, url, headers=headers, body=body, timeout=timeout
                )
            except TransportError as exc:
                call.error_type = error_type(exc)
                measured.end(None, call.error_type)
                text = self._token.redact(str(exc))
                logger.debug("%s %s: %s", method, shown, text)
                return token, TransportError(
                    text,
                    method=method,
                    path=shown,
                    may_have_succeeded=method == "POST" and exc.may_have_succeeded,
                )
            except BaseException as exc:  # cancelled (a deadline, a close): the span still ends
                cancelled = isinstance(exc, asyncio.CancelledError)
                measured.end(None, "cancelled" if cancelled else type(exc).__name__)
                raise
            call.error_type = None if response.status < 400 else str(response.status)
            measured.end(response.status, call.error_type)
            if response.status == 429:
                self.stats.rate_limited += 1
                self.telemetry.rate_limited(method, call.template)
                slot.rate_limited(
                    parse_retry_after(response.headers.get("Retry-After"), self._max_retry_after)
                )
        logger.debug(
            "%s %s -> %d in %.1f ms",
            method,
            shown,
            response.status,
            (time.perf_counter() - started) * 1000,
        )
        return token, response
