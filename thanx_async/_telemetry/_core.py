"""One client's telemetry: HTTP client spans and metrics, budget waits, retries, 429s.

HTTP spans and ``http.client.request.duration`` follow the semantic conventions
for HTTP clients: one span per attempt, named ``{method} {url.template}``, kind
CLIENT, started just before the request is handed to the wire (after its wait
for rate budget, which is the ``thanx.rate_limit.wait`` attribute) and ended
when the whole response body was read. ``url.full`` keeps the path (API ids,
never a person's identifier or the token: the path is the redacted one errors
show) and replaces every query value with ``REDACTED``.

Every method is cheap when nothing listens: without the ``otel`` extra they
return at once; with the API alone its no-op tracer and instruments answer.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from thanx_async._telemetry._api import Api, load, provider_records
from thanx_async._telemetry._instruments import Instruments, instruments_for

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import Span, Tracer, TracerProvider

__all__ = ["NO_ATTEMPT", "Attempt", "Telemetry"]


class Attempt:
    """One HTTP attempt being measured: its span and its duration."""

    __slots__ = ("_attributes", "_instruments", "_span", "_started", "_telemetry")

    def __init__(
        self, telemetry: Telemetry | None, span: Span | None, attributes: dict[str, Any]
    ) -> None:
        self._telemetry = telemetry
        self._span = span
        self._attributes = attributes
        self._started = time.perf_counter()

    def end(self, status: int | None, error_type: str | None) -> None:
        """The attempt ended with this status (None: no response) and error type (None: fine)."""
        telemetry, span = self._telemetry, self._span
        if telemetry is None or span is None:
            return
        self._telemetry = None  # once
        seconds = time.perf_counter() - self._started
        attributes = self._attributes
        if status is not None:
            attributes["http.response.status_code"] = status
        if error_type is not None:
            attributes["error.type"] = error_type
        telemetry.instruments.http_duration.record(seconds, attributes)
        if span.is_recording():
            if status is not None:
                span.set_attribute("http.response.status_code", status)
            if error_type is not None:
                span.set_attribute("error.type", error_type)
                span.set_status(telemetry.api.ERROR)
        span.end()


#: What :meth:`Telemetry.attempt` returns when OpenTelemetry is not installed.
NO_ATTEMPT = Attempt(None, None, {})


class Telemetry:
    """What one :class:`~thanx_async.ThanxClient` (and the batchers on it) report.

    The tracer and the instruments are resolved on first use, from the
    providers given or else the global ones, so an SDK configured after the
    client was built is honoured (the API's global proxies delegate to it).

    Args:
        base_url: where requests go (``server.address``, ``server.port``).
        tracer_provider: a tracer provider instead of the global one.
        meter_provider: a meter provider instead of the global one.
    """

    def __init__(
        self,
        *,
        base_url: str,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        api = load()
        self._api = api
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        self._tracer: Tracer | None = None
        self._instruments: Instruments | None = None
        parts = urlsplit(base_url)
        self._scheme = parts.scheme
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._netloc = parts.netloc
        self._prefix = parts.path.rstrip("/")
        #: An SDK records spans: per-identifier tracing work (links) pays off.
        self.tracing = False
        #: An SDK records metrics: per-identifier timing pays off.
        self.timing = False
        #: ``tracing or timing``: one attribute for the submit path to read.
        self.per_item = False
        self.refresh()

    @property
    def enabled(self) -> bool:
        """Whether the OpenTelemetry API is installed (else every method does nothing)."""
        return self._api is not None

    @property
    def api(self) -> Api:
        """The API (only called where :attr:`enabled` holds)."""
        assert self._api is not None
        return self._api

    def refresh(self) -> None:
        """Look again whether an SDK records (cheap; batchers call it once per batch)."""
        api = self._api
        if api is None:
            return
        if not self.tracing:
            provider: Any = self._tracer_provider or api.trace.get_tracer_provider()
            self.tracing = provider_records(provider, api.trace)
        if not self.timing:
            meters: Any = self._meter_provider or api.metrics.get_meter_provider()
            self.timing = provider_records(meters, api.metrics)
        self.per_item = self.tracing or self.timing

    @property
    def tracer(self) -> Tracer:
        """Our tracer (the global proxy's until an SDK is set, then the SDK's)."""
        tracer = self._tracer
        if tracer is None:
            from thanx_async._version import __version__  # noqa: PLC0415 - a leaf module

            tracer = self._tracer = self.api.trace.get_tracer(
                "thanx_async", __version__, tracer_provider=self._tracer_provider
            )
        return tracer

    @property
    def instruments(self) -> Instruments:
        """Our instruments on the meter provider."""
        instruments = self._instruments
        if instruments is None:
            instruments = self._instruments = instruments_for(self.api, self._meter_provider)
        return instruments

    # -- transport --------------------------------------------------------------

    def attempt(
        self,
        method: str,
        template: str | None,
        shown: str,
        *,
        resend_count: int,
        waited: float,
    ) -> Attempt:
        """Start measuring one HTTP attempt (a CLIENT span, and its duration).

        Args:
            method: the HTTP method.
            template: the path's template (``/partner/issuance_jobs/{job_id}``), if known.
            shown: the path and query as errors show them (tokens redacted).
            resend_count: earlier attempts of the same call.
            waited: seconds this attempt waited for rate budget.
        """
        if self._api is None:
            return NO_ATTEMPT
        attributes: dict[str, Any] = {
            "http.request.method": method,
            "server.address": self._host,
            "server.port": self._port,
        }
        if template is not None:
            attributes["url.template"] = template
        span_attributes = dict(attributes)
        span_attributes["url.full"] = self._full_url(shown)
        span_attributes["thanx.rate_limit.wait"] = waited
        if resend_count:
            span_attributes["http.request.resend_count"] = resend_count
        span = self.tracer.start_span(
            method if template is None else f"{method} {template}",
            kind=self.api.CLIENT,
            attributes=span_attributes,
        )
        return Attempt(self, span, attributes)

    def _full_url(self, shown: str) -> str:
        path, _, query = shown.partition("?")
        url = f"{self._scheme}://{self._netloc}{self._prefix}{path}"
        if query:
            url += "?" + "&".join(f"{key}=REDACTED" for key, _ in parse_qsl(query))
        return url

    def budget_waited(
        self, method: str, template: str | None, seconds: float, *, granted: bool
    ) -> None:
        """A request attempt waited ``seconds`` for rate budget (and got it, or its deadline)."""
        if self._api is None:
            return
        attributes: dict[str, Any] = {
            "http.request.method": method,
            "thanx.budget.granted": granted,
        }
        if template is not None:
            attributes["url.template"] = template
        self.instruments.budget_wait.record(seconds, attributes)

    def retried(self, method: str, template: str | None, error_type: str) -> None:
        """A call is sent again after an attempt that failed with ``error_type``."""
        if self._api is None:
            return
        attributes: dict[str, Any] = {"http.request.method": method, "error.type": error_type}
        if template is not None:
            attributes["url.template"] = template
        self.instruments.retries.add(1, attributes)

    def rate_limited(self, method: str, template: str | None) -> None:
        """A 429 answer arrived."""
        if self._api is None:
            return
        attributes: dict[str, Any] = {"http.request.method": method}
        if template is not None:
            attributes["url.template"] = template
        self.instruments.rate_limited.add(1, attributes)

    def watch_limiter(self, limiter: object) -> None:
        """Report a rate limiter's budget share and queue (read from its ``stats()``)."""
        if self._api is not None:
            self.instruments.limiters.add(limiter)
