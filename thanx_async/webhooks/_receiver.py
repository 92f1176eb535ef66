"""WebhookReceiver: verify, deduplicate and hand off Thanx deliveries, then answer at once.

The work per delivery is synchronous and small (an HMAC, a hash, a JSON
parse); the sinks (batchers) are called on a later turn of the event loop,
after the answer is on its way, so a slow or failing sink can never push a
delivery near Thanx's 15 s limit nor turn it into an error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Final

import attrs
import orjson

from thanx_async.webhooks._decode import decode_event
from thanx_async.webhooks._errors import InvalidSignatureError, WebhookPayloadError
from thanx_async.webhooks._events import (
    RewardBatchCompleted,
    RewardIssued,
    WebhookEvent,
)
from thanx_async.webhooks._memory import ReplayMemory, digest
from thanx_async.webhooks._signature import check_signature, secrets_of
from thanx_async.webhooks._sinks import SinkRelay, WebhookSink

if TYPE_CHECKING:
    from aiohttp import web

    from thanx_async.webhooks._asgi import AsgiApp

__all__ = ["WebhookReceiver", "WebhookStats"]

logger = logging.getLogger("thanx_async.webhooks")

#: Default body cap: a ``reward_batch.completed`` listing 10,000 failures with
#: long emails and reasons stays under 5 MB.
DEFAULT_MAX_BODY_SIZE: Final = 8 * 1024 * 1024
_LOG_EVERY: Final = 10.0  # seconds between two log lines about the same kind of rejection


@attrs.frozen(kw_only=True)
class WebhookStats:
    """What a :class:`WebhookReceiver` did so far (a snapshot).

    Attributes:
        received: deliveries read (including every rejected one).
        accepted: verified, new events handed to the sinks.
        duplicates: verified deliveries already accepted before (answered 200, not handed on).
        unauthorized: missing or wrong signature (answered 401).
        stale: timestamp older than the tolerance (answered 400).
        malformed: signed but unreadable (answered 400).
        too_large: body over ``max_body_size`` (answered 413).
        claimed: accepted events at least one sink said were its own.
        sink_errors: exceptions raised by sinks (logged).
    """

    received: int = 0
    accepted: int = 0
    duplicates: int = 0
    unauthorized: int = 0
    stale: int = 0
    malformed: int = 0
    too_large: int = 0
    claimed: int = 0
    sink_errors: int = 0


def _answer(code: int, /, **fields: str) -> tuple[int, bytes]:
    return code, orjson.dumps(fields)


ACCEPTED: Final = _answer(200, status="accepted")
DUPLICATE: Final = _answer(200, status="duplicate")
UNAUTHORIZED: Final = _answer(401, error="invalid signature")
TOO_LARGE: Final = _answer(413, error="body too large")
STALE: Final = _answer(400, error="stale delivery")
MALFORMED: Final = _answer(400, error="malformed payload")


def _event_key(event: WebhookEvent) -> bytes | None:
    """What makes two differently-worded deliveries the same event, if anything does."""
    if isinstance(event, RewardBatchCompleted):
        return digest(b"completed", event.issuance_job_id.encode())
    if isinstance(event, RewardIssued):
        if event.reward_id is not None:
            which = b"reward:" + event.reward_id.encode()
        elif event.identifier_index is not None:
            which = b"index:" + str(event.identifier_index).encode()
        else:
            return None
        return digest(b"issued", event.issuance_job_id.encode(), which)
    return None


class _Throttle:
    """At most one log line per kind every few seconds, saying how many were folded into it."""

    def __init__(self) -> None:
        self._next: dict[str, float] = {}
        self._folded: dict[str, int] = {}

    def log(self, kind: str, message: str, *args: object) -> None:
        now = time.monotonic()
        if now < self._next.get(kind, 0.0):
            self._folded[kind] = self._folded.get(kind, 0) + 1
            return
        self._next[kind] = now + _LOG_EVERY
        folded = self._folded.pop(kind, 0)
        suffix = f" (and {folded} more like it in the last {_LOG_EVERY:g} s)" if folded else ""
        logger.warning(message + suffix, *args)


class WebhookReceiver:
    """Receives Thanx webhooks and hands each verified, new event to the sinks (batchers).

    For every delivery, in this order: cap the body size (413), verify
    ``X-Thanx-Signature`` on the raw bytes (401; nothing is read or acted
    on), drop a delivery already accepted (200, a duplicate), read the event
    (400 if signed but unreadable), refuse one whose ``timestamp`` is older
    than ``tolerance`` (400, a replay), then answer 200 at once and call each
    sink's ``receive_webhook(event)`` on the next turn of the event loop.

    Deduplication remembers each accepted delivery (a digest of its body, and
    of its meaning: the job of a ``reward_batch.completed``, the job and
    reward of a ``reward.issued``) for ``dedupe_ttl`` seconds, at most
    ``dedupe_max`` of each kind, oldest forgotten first. It is per process:
    sinks must still tolerate an event twice (with several processes behind
    a load balancer, duplicates can land in different ones). Keep
    ``dedupe_ttl`` above ``tolerance`` so a replay is either remembered or
    stale.

    Serve it with aiohttp (``app.router.add_post(path, receiver.aiohttp_handler)``)
    or as an ASGI app (``app.add_route(path, receiver.asgi_app, methods=["POST"])``
    in FastAPI or Starlette); other frameworks call :meth:`handle` with the raw body.

    Args:
        secret: the webhook secret, or several (any one matching is enough:
            rotate by listing new and old, then dropping the old).
        batchers: the sinks, typically ``RewardBatcher`` objects; more can be
            added with :meth:`add_sink`.
        max_body_size: larger bodies are refused with 413 unread.
        tolerance: seconds a delivery's ``timestamp`` may lag behind this
            host's clock; ``None`` accepts any age. A delivery without a
            readable timestamp is accepted (deduplication still applies).
        dedupe_ttl: seconds an accepted delivery is remembered.
        dedupe_max: the most deliveries remembered, for ``reward.issued`` and
            for all other events apart (~350 bytes each; a flood of
            ``reward.issued`` never pushes a job's completion out).
        clock: wall-clock seconds since the epoch, for ``tolerance``.

    Raises:
        ValueError: an empty secret, or a limit out of range.
        TypeError: a sink without a ``receive_webhook`` method.

    Example:
        >>> receiver = WebhookReceiver(secret=os.environ["THANX_WEBHOOK_SECRET"],
        ...                            batchers=[batcher])
        >>> app.router.add_post("/webhooks/thanx", receiver.aiohttp_handler)
    """

    def __init__(
        self,
        *,
        secret: str | Sequence[str],
        batchers: Iterable[WebhookSink] = (),
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        tolerance: float | None = 300.0,
        dedupe_ttl: float = 900.0,
        dedupe_max: int = 50_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = secrets_of(secret)
        if max_body_size < 1:
            raise ValueError(f"max_body_size must be >= 1, got {max_body_size}")
        if tolerance is not None and tolerance <= 0:
            raise ValueError(f"tolerance must be > 0 or None, got {tolerance}")
        self.max_body_size = max_body_size
        self.tolerance = tolerance
        self._clock = clock
        if dedupe_max < 1:
            raise ValueError(f"dedupe_max must be >= 1, got {dedupe_max}")
        # Two keys per delivery: its bytes and its meaning.
        self._memory = ReplayMemory(ttl=dedupe_ttl, max_keys=2 * dedupe_max)
        self._issued_memory = ReplayMemory(ttl=dedupe_ttl, max_keys=2 * dedupe_max)
        self._relay = SinkRelay(batchers)
        self._counts = dict.fromkeys(
            set(attrs.fields_dict(WebhookStats)) - {"claimed", "sink_errors"}, 0
        )
        self._throttle = _Throttle()
        self._asgi: AsgiApp | None = None

    def __repr__(self) -> str:
        # Never the secret.
        return f"<WebhookReceiver sinks={len(self.sinks)} accepted={self._counts['accepted']}>"

    # -- sinks ------------------------------------------------------------------

    @property
    def sinks(self) -> tuple[WebhookSink, ...]:
        """The objects events are handed to, in order."""
        return self._relay.sinks

    def add_sink(self, sink: WebhookSink) -> None:
        """Hand later events to ``sink`` too (e.g. a batcher created after the receiver).

        Raises:
            TypeError: ``sink`` has no callable ``receive_webhook``.
        """
        self._relay.add(sink)

    def remove_sink(self, sink: WebhookSink) -> None:
        """Stop handing events to ``sink`` (no-op if it is not a sink)."""
        self._relay.remove(sink)

    @property
    def stats(self) -> WebhookStats:
        """Counters of what happened so far."""
        relay = self._relay
        return WebhookStats(**self._counts, claimed=relay.claimed, sink_errors=relay.errors)

    # -- one delivery -------------------------------------------------------------

    def handle(self, raw_body: bytes, signature: str | None) -> tuple[int, bytes]:
        """Handle one delivery from any framework: the HTTP status and JSON body to answer.

        The aiohttp and ASGI adapters call this; other frameworks can too.
        Call it from the event loop the sinks live on, with the body exactly
        as received (refuse a body over ``max_body_size`` with :meth:`too_large`
        before reading it all); the sinks are called on a later turn of the loop.

        Args:
            raw_body: the request body bytes.
            signature: the ``X-Thanx-Signature`` header, ``None`` if absent.

        Returns:
            ``(status, body)``: 200 (accepted or duplicate), 400 (malformed or
            stale), 401 (signature) or 413 (too large).

        Raises:
            RuntimeError: no event loop is running.
        """
        if len(raw_body) > self.max_body_size:
            return self.too_large()
        counts = self._counts
        counts["received"] += 1
        try:
            check_signature(raw_body, signature, self._keys)
        except InvalidSignatureError as error:
            counts["unauthorized"] += 1
            self._throttle.log("unauthorized", "refused a webhook delivery (401): %s", error)
            return UNAUTHORIZED
        return self._accept(raw_body)

    def _accept(self, raw_body: bytes) -> tuple[int, bytes]:
        """The rest of :meth:`handle`, for a body whose signature is verified."""
        counts = self._counts
        body_key = digest(raw_body)
        if body_key in self._memory or body_key in self._issued_memory:
            counts["duplicates"] += 1
            return DUPLICATE
        try:
            event = decode_event(raw_body)
        except WebhookPayloadError as error:
            counts["malformed"] += 1
            self._throttle.log("malformed", "refused a signed webhook delivery (400): %s", error)
            return MALFORMED
        if self._is_stale(event):
            counts["stale"] += 1
            self._throttle.log(
                "stale",
                "refused a %s delivery older than %s s (400): a replay, or a clock off",
                event.event,
                self.tolerance,
            )
            return STALE
        event_key = _event_key(event)
        # reward.issued floods are remembered apart: 10,000 of them must not
        # push a job's reward_batch.completed out of the memory.
        memory = self._issued_memory if isinstance(event, RewardIssued) else self._memory
        if event_key is not None and event_key in memory:
            counts["duplicates"] += 1
            memory.add(body_key)
            return DUPLICATE
        loop = asyncio.get_running_loop()
        memory.add(body_key)
        if event_key is not None:
            memory.add(event_key)
        counts["accepted"] += 1
        self._relay.post(event, loop)
        return ACCEPTED

    def too_large(self) -> tuple[int, bytes]:
        """Count a delivery refused for its size, and what to answer (413)."""
        self._counts["received"] += 1
        self._counts["too_large"] += 1
        self._throttle.log(
            "too_large", "refused a webhook delivery over %d bytes (413)", self.max_body_size
        )
        return TOO_LARGE

    def _is_stale(self, event: WebhookEvent) -> bool:
        if self.tolerance is None or event.timestamp is None:
            return False
        return self._clock() - event.timestamp.timestamp() > self.tolerance

    # -- framework adapters ------------------------------------------------------------

    async def aiohttp_handler(self, request: web.Request) -> web.Response:
        """An aiohttp handler: ``app.router.add_post("/webhooks/thanx", receiver.aiohttp_handler)``.

        Reads the body itself, capped at ``max_body_size`` (whatever the
        application's ``client_max_size``).
        """
        from thanx_async.webhooks._aiohttp import handle_aiohttp  # noqa: PLC0415 - lazy

        return await handle_aiohttp(self, request)

    @property
    def asgi_app(self) -> AsgiApp:
        """A minimal ASGI 3 application (no framework needed) answering ``POST`` deliveries.

        FastAPI: ``app.add_route("/webhooks/thanx", receiver.asgi_app, methods=["POST"])``;
        Starlette: ``Route("/webhooks/thanx", receiver.asgi_app, methods=["POST"])``.
        ``app.mount(...)`` works too, at the path with a trailing slash (Starlette
        redirects the one without). It answers any path it is given, 405 for
        other methods, and completes the lifespan protocol, so it can also be
        served alone.
        """
        if self._asgi is None:
            from thanx_async.webhooks._asgi import AsgiApp  # noqa: PLC0415 - lazy

            self._asgi = AsgiApp(self)
        return self._asgi
