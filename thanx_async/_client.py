"""ThanxClient: one typed method per endpoint of the reward-issuance API."""

from __future__ import annotations

import asyncio
import os
import uuid
import warnings
from collections.abc import AsyncIterator, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Self
from urllib.parse import quote

import aiohttp

from thanx_async._config import SANDBOX_URL, RateLimit, RetryPolicy, check_base_url
from thanx_async._errors import JobTimeoutError, MalformedResponseError
from thanx_async._identifiers import Identifier
from thanx_async._models import Campaign, IssuanceJob
from thanx_async._serde import dumps, read_campaign, read_campaign_page, read_job, read_scopes
from thanx_async._telemetry import Telemetry
from thanx_async._transport._auth import TokenProvider, TokenSource
from thanx_async._transport._http import DEFAULT_MAX_BODY, AiohttpTransport, Transport
from thanx_async._transport._ratelimit import RateLimiter, SlidingWindowLimiter
from thanx_async._transport._requester import Requester, TransportStats
from thanx_async._version import __version__

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

__all__ = ["MAX_IDENTIFIERS", "ThanxClient"]

#: The API's limit of identifiers per issue request.
MAX_IDENTIFIERS = 10_000

_ISSUE_PATH = "/partner/campaigns/issue"
# The paths' templates: telemetry's url.template and the HTTP spans' names.
_JOB_TEMPLATE = "/partner/issuance_jobs/{job_id}"
_REVOKE_TEMPLATE = "/partner/issuance_jobs/{job_id}/revoke"
_CAMPAIGN_TEMPLATE = "/partner/campaigns/{campaign_id}"

#: Said by a MalformedResponseError answering an issue POST.
_ISSUE_MAY_HAVE_SUCCEEDED = (
    "the batch may have been issued; re-sending the same batch with the same key is safe"
)


def _job_path(job_id: str) -> str:
    return f"/partner/issuance_jobs/{quote(job_id, safe='')}"


class ThanxClient:
    """An async client for the Thanx Partner API's reward issuance.

    One client holds one aiohttp session (created lazily in the running loop)
    and one rate limiter shared by every request it makes, so all of a
    credential's traffic stays within Thanx's limits. Close it with
    ``async with`` or :meth:`aclose`.

    Args:
        client_id: the ``X-ClientId`` issued with the token.
        access_token: the bearer token, or an async callable returning one
            (re-asked once when a request gets 401). Surrounding whitespace (a
            trailing newline from a secrets file) is stripped, from a
            provider's tokens too; a token with a control or whitespace
            character inside is refused (``ValueError`` here; a provider's such
            token fails the request with :class:`TransportError`, nothing
            sent). The token never appears in an error or a log: any text a
            server sends back is redacted.
        base_url: :data:`SANDBOX_URL` (default), :data:`PRODUCTION_URL` or an
            emulator: ``https://`` or ``http://``, a host, optionally a path prefix.
        user_agent: ``{partner}/{version}``; defaults to ``thanx-async/<version>``.
        timeout: seconds for one attempt of one request.
        retry: the retry policy; its ``deadline`` bounds every call as a whole,
            waiting for rate budget included.
        rate_limit: the credential's request budget; its ``window`` also caps
            any ``Retry-After``.
        session: an aiohttp session to use; it is not closed by the client.
        transport: replaces the aiohttp transport entirely (tests, custom stacks).
        limiter: replaces the in-process rate limiter (e.g. one shared by processes).
        max_response_bytes: the largest response body read (16 MiB by default,
            16 times the largest real answer); a larger 2xx body raises
            :class:`MalformedResponseError`. Ignored with ``transport``.
        tracer_provider: where this client's spans (and its batchers') go,
            instead of OpenTelemetry's global tracer provider. Needs the
            ``otel`` extra; see the telemetry guide.
        meter_provider: likewise for metrics, instead of the global meter provider.

    Raises:
        ValueError: an empty ``client_id``, an unusable ``access_token`` (the
            message never shows it), a ``base_url`` that is not an http(s) URL
            with a host, or a ``timeout`` that is not > 0.

    Example:
        >>> async def main() -> None:
        ...     async with ThanxClient(client_id="...", access_token="...") as client:
        ...         job = await client.issue_rewards(
        ...             merchant_id="m", campaign_id="c", variant_id="v",
        ...             identifiers=["jane@example.com", "+14155551234"])
        ...         job = await client.wait_for_job(job.id, merchant_id="m")
    """

    def __init__(
        self,
        *,
        client_id: str,
        access_token: str | TokenProvider,
        base_url: str = SANDBOX_URL,
        user_agent: str | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        rate_limit: RateLimit | None = None,
        session: aiohttp.ClientSession | None = None,
        transport: Transport | None = None,
        limiter: RateLimiter | None = None,
        max_response_bytes: int = DEFAULT_MAX_BODY,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        if not client_id:
            raise ValueError("client_id is empty")
        if timeout <= 0:
            raise ValueError("timeout must be > 0")
        token = TokenSource(access_token)  # first: refuse a bad token before anything else
        self.client_id = client_id
        self.base_url = check_base_url(base_url)
        self.rate_limit = rate_limit or RateLimit()
        self.retry = retry or RetryPolicy()
        self._transport: Transport = transport or AiohttpTransport(
            session, max_body=max_response_bytes
        )
        # Only a session we created ourselves is worth a ResourceWarning.
        self._http = self._transport if isinstance(self._transport, AiohttpTransport) else None
        self.limiter: RateLimiter = limiter or SlidingWindowLimiter(self.rate_limit)
        if (bind := getattr(self.limiter, "bind", None)) is not None:
            bind(client_id)  # a shared limiter (thanx_async.redis) keys its budget by it
        self._telemetry = Telemetry(
            base_url=self.base_url, tracer_provider=tracer_provider, meter_provider=meter_provider
        )
        self._telemetry.watch_limiter(self.limiter)
        self._requester = Requester(
            base_url=self.base_url,
            client_id=client_id,
            token=token,
            user_agent=user_agent or f"thanx-async/{__version__}",
            timeout=timeout,
            retry=self.retry,
            limiter=self.limiter,
            transport=self._transport,
            max_retry_after=self.rate_limit.window,
            telemetry=self._telemetry,
        )
        self._closed = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **kwargs: object) -> ThanxClient:
        """Build a client from ``THANX_CLIENT_ID``, ``THANX_ACCESS_TOKEN`` and ``THANX_BASE_URL``.

        Args:
            env: the mapping to read (defaults to ``os.environ``).
            **kwargs: any other constructor argument.

        Raises:
            ValueError: a required variable is missing (its value is never echoed).
        """
        env = os.environ if env is None else env
        missing = [n for n in ("THANX_CLIENT_ID", "THANX_ACCESS_TOKEN") if not env.get(n)]
        if missing:
            raise ValueError(f"missing environment variable(s): {', '.join(missing)}")
        return cls(
            client_id=env["THANX_CLIENT_ID"],
            access_token=env["THANX_ACCESS_TOKEN"],
            base_url=env.get("THANX_BASE_URL") or SANDBOX_URL,
            **kwargs,  # type: ignore[arg-type]
        )

    def __repr__(self) -> str:
        return f"ThanxClient(client_id={self.client_id!r}, base_url={self.base_url!r})"

    @property
    def stats(self) -> TransportStats:
        """Counters of requests, retries and 429s made by this client."""
        return self._requester.stats

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the session the client created (a session passed in stays open)."""
        self._closed = True
        await self._transport.aclose()
        if (close := getattr(self.limiter, "aclose", None)) is not None:
            await close()  # a shared limiter's connection (it reconnects if used again)

    def __del__(self) -> None:
        http = getattr(self, "_http", None)
        if http is not None and http.owns_open_session and not getattr(self, "_closed", True):
            warnings.warn(
                f"{self!r} was never closed; use 'async with' or 'await client.aclose()'",
                ResourceWarning,
                stacklevel=2,
            )

    async def issue_rewards(
        self,
        *,
        merchant_id: str,
        campaign_id: str,
        variant_id: str,
        identifiers: Sequence[Identifier | str],
        idempotency_key: str | None = None,
    ) -> IssuanceJob:
        """Issue a reward to up to 10,000 identifiers; returns the pending job.

        Retries reuse the same body bytes and idempotency key, so a retry after a
        lost response returns the original job instead of issuing twice.

        Args:
            merchant_id: the merchant.
            campaign_id: the campaign.
            variant_id: a variant of that campaign.
            identifiers: 1 to 10,000 emails/phones (strings are parsed and validated).
            idempotency_key: the ``X-Idempotency-Key``; a UUID4 is made once per
                call when none is given.

        Raises:
            ValueError: no identifiers or more than 10,000 (before any request).
            InvalidIdentifierError: an identifier is invalid (before any request).
        """
        if not identifiers:
            raise ValueError("identifiers is empty; the API needs 1 to 10,000")
        if len(identifiers) > MAX_IDENTIFIERS:
            raise ValueError(f"{len(identifiers)} identifiers; the API takes at most 10,000")
        parsed = [Identifier.parse(i) for i in identifiers]
        body = dumps(
            {
                "merchant_id": merchant_id,
                "campaign_id": campaign_id,
                "variant_id": variant_id,
                "identifiers": [i.to_json() for i in parsed],
            }
        )
        return await self.issue_rewards_raw(body, idempotency_key or str(uuid.uuid4()))

    async def issue_rewards_raw(self, body: bytes, idempotency_key: str) -> IssuanceJob:
        """POST an already-serialised issue body (used by the batcher; bytes are sent as is).

        Raises:
            MalformedResponseError: 2xx answers that could not be read, also
                after re-sending the same bytes and key within the retry
                policy; the batch may have been issued (``may_have_succeeded``).
        """
        try:
            return await self._requester.request(
                "POST",
                _ISSUE_PATH,
                read_job,
                body=body,
                idempotency_key=idempotency_key,
                template=_ISSUE_PATH,
            )
        except MalformedResponseError as exc:
            raise MalformedResponseError(
                exc.reason,
                status=exc.status,
                method=exc.method,
                path=exc.path,
                may_have_succeeded=True,
                consequence=_ISSUE_MAY_HAVE_SUCCEEDED,
            ) from None

    async def get_issuance_job(
        self, job_id: str, *, merchant_id: str, background: bool = False
    ) -> IssuanceJob:
        """Fetch an issuance job.

        Args:
            job_id: the job.
            merchant_id: its merchant.
            background: mark the request as a poll, which yields rate budget to POSTs.
        """
        return await self._requester.request(
            "GET",
            _job_path(job_id),
            read_job,
            params={"merchant_id": merchant_id},
            background=background,
            template=_JOB_TEMPLATE,
        )

    async def revoke_issuance_job(self, job_id: str, *, merchant_id: str) -> IssuanceJob:
        """Revoke the rewards of a ``completed`` or ``failed`` job.

        The API answers 202 with the job ``revoking`` (some sources say 200 with
        no body; then the job is fetched).

        Raises:
            UnprocessableEntityError: the job is not in a revocable state.
        """
        body = dumps({"merchant_id": merchant_id})
        job = await self._requester.request(
            "POST",
            _job_path(job_id) + "/revoke",
            _read_job_or_none,
            body=body,
            template=_REVOKE_TEMPLATE,
        )
        if job is None:
            return await self.get_issuance_job(job_id, merchant_id=merchant_id)
        return job

    async def wait_for_job(
        self,
        job_id: str,
        *,
        merchant_id: str,
        timeout: float | None = None,
        initial_interval: float = 0.5,
        max_interval: float = 10.0,
    ) -> IssuanceJob:
        """Poll a job until it is ``completed``, ``failed`` or ``revoked``.

        The interval starts at ``initial_interval``, grows by half each poll and
        is capped at ``max_interval``; polls run on the shared rate budget.

        Raises:
            JobTimeoutError: the job was not terminal after ``timeout`` seconds.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        interval = initial_interval
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    job = await self.get_issuance_job(
                        job_id, merchant_id=merchant_id, background=True
                    )
                    if job.is_terminal:
                        return job
                    await asyncio.sleep(interval)
            except TimeoutError:
                raise JobTimeoutError(job_id) from None
            interval = min(max_interval, interval * 1.5)

    async def iter_campaigns(
        self, *, merchant_id: str, per_page: int = 100
    ) -> AsyncIterator[Campaign]:
        """Every campaign of a merchant, following pagination."""
        page = 1
        while True:
            campaigns, pagination = await self._requester.request(
                "GET",
                "/partner/campaigns",
                read_campaign_page,
                params={"merchant_id": merchant_id, "page": page, "per_page": per_page},
                template="/partner/campaigns",
            )
            for campaign in campaigns:
                yield campaign
            if not campaigns or page >= pagination.total_pages:
                return
            page += 1

    async def get_campaign(self, campaign_id: str) -> Campaign:
        """Fetch one campaign with its variants."""
        return await self._requester.request(
            "GET",
            f"/partner/campaigns/{quote(campaign_id, safe='')}",
            read_campaign,
            template=_CAMPAIGN_TEMPLATE,
        )

    async def get_scopes(self) -> list[str]:
        """The scopes of this credential (``rewards.issue`` is needed to issue)."""
        return await self._requester.request(
            "GET", "/partner/scopes", read_scopes, template="/partner/scopes"
        )


def _read_job_or_none(body: bytes) -> IssuanceJob | None:
    return read_job(body) if body.strip() else None
