"""WebhookRelay: a webhook received by one process finishes the job in whichever process waits.

Thanx posts each webhook once, to one URL; behind a load balancer it lands in
one process of the fleet, while the batch waiting on that job may live in
another. The relay is a :class:`~thanx_async.webhooks.WebhookSink` in every
process: the :class:`~thanx_async.webhooks.WebhookReceiver` of the process
that got the delivery hands it the verified event, the relay hands it to its
own batchers and publishes it on a Redis channel, and every other process's
relay hands what it reads there to its batchers.

A message on the channel is one line of header, ``thanx_async/1 <origin>``,
then the event's envelope as JSON (``{"event", "timestamp", "data"}``). The
relay runs after verification and does not sign what it publishes: the channel
is trusted like the rest of the Redis the fleet shares (whoever can publish
there could as well rewrite the journal or the rate budget).

Redis pub/sub keeps nothing: a message published while a process is not
subscribed (Redis restarting, the connection being re-established) never
reaches it. The relay re-subscribes by itself; the jobs whose event was
missed are polled after their predicted end plus the batcher's grace, as if
Thanx had not delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, Any, Final, Self

try:
    import redis.asyncio
    import redis.exceptions
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
except ImportError as exc:  # pragma: no cover - the extra is installed wherever tests run
    raise ImportError("thanx_async.redis needs redis-py: pip install 'thanx-async[redis]'") from exc

import orjson

from thanx_async.redis._errands import TRANSIENT, backoff
from thanx_async.webhooks._decode import decode_event
from thanx_async.webhooks._errors import WebhookPayloadError
from thanx_async.webhooks._events import RewardBatchCompleted, WebhookEvent
from thanx_async.webhooks._sinks import SinkRelay, WebhookSink

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["WebhookRelay"]

logger = logging.getLogger("thanx_async.redis")

DEFAULT_CHANNEL: Final = "thanx_async:webhooks"
#: What every message starts with; a message without it is not ours.
_MAGIC: Final = b"thanx_async/1 "
#: Seconds a publication keeps being retried while Redis does not answer.
#: Later than that, the job's safety-net poll has it covered.
_PATIENCE: Final = 10.0
#: Events waiting for Redis, at most; beyond it new ones are dropped (and polled for).
_MAX_OUTBOX: Final = 10_000
#: The socket timeouts of a connection the relay opens itself.
_SOCKET_TIMEOUT: Final = 5.0


def _envelope(event: WebhookEvent) -> bytes:
    """The event as the envelope Thanx posted (``{"event", "timestamp", "data"}``)."""
    data: Any = event.data
    if not isinstance(data, dict | list | str | int | float | bool | None):
        data = dict(data)  # a Mapping that is not a dict (orjson takes only dicts)
    stamp = None if event.timestamp is None else event.timestamp.isoformat()
    return orjson.dumps({"event": event.event, "timestamp": stamp, "data": data})


class WebhookRelay:
    """Shares verified webhook events among the processes of a fleet, over Redis pub/sub.

    Create one in every process, attach that process's batchers to it, and
    give it to that process's :class:`~thanx_async.webhooks.WebhookReceiver`
    (if the process serves the webhook URL)::

        relay = WebhookRelay("redis://redis.internal:6379/0")
        relay.attach(batcher)                      # its jobs finish by any process's delivery
        receiver = WebhookReceiver(secret=..., batchers=[relay])
        async with relay:                          # subscribes; aclose() at the end
            ...

    An event the receiver hands over (``receive_webhook``) goes to the attached
    batchers at once and is published on ``channel``; an event read from the
    channel, published by another process, goes to the attached batchers. A
    process never gets its own publications back, and a batcher also given to
    the receiver directly is harmless: a batcher finishes a job once, and
    ignores a second delivery for it.

    :meth:`attach` tells a batcher that webhooks are coming
    (``expect_webhooks()``), so a process that serves no webhook URL still
    moves each job's safety-net poll to after its predicted end plus a grace.

    Redis restarts or connections dropping are survived: the relay subscribes
    again by itself, with backoff. Events published meanwhile are lost for the
    processes that were not subscribed (pub/sub keeps nothing), and so are
    events this process could not publish within 10 s: their jobs are polled,
    as if Thanx had not delivered. Polling stays the safety net.

    Only events whose name is in ``events`` are published (by default
    ``reward_batch.completed``, the one that finishes jobs; a job's 10,000
    ``reward.issued`` would cost 10,000 messages for nothing a batcher uses).
    Every event the receiver hands over still goes to the local batchers.

    The relay trusts the channel: what it reads there is not verified again.
    Keep that Redis as private as the journal and the rate budget it may hold.

    Args:
        url_or_client: a Redis URL (``redis://``, ``rediss://``, ``unix://``),
            or a ``redis.asyncio.Redis`` to use (not closed by :meth:`aclose`;
            one of its pool's connections is held for the subscription).
        channel: the pub/sub channel; every process of the fleet must use the same.
        batchers: sinks to attach at once (see :meth:`attach`).
        events: the event names published, ``None`` for all.

    Attributes:
        published: events this process published.
        relayed: events read from the channel (from other processes) and handed on.
        lost: events this process could not publish (Redis unreachable for too long).
        malformed: messages on the channel that were not a readable event (ignored).
        reconnects: times the subscription was re-established after it broke.

    Raises:
        ValueError: an empty channel, or a malformed URL.
        TypeError: neither a URL nor a ``redis.asyncio.Redis`` (a
            ``RedisCluster``'s asyncio client offers no pub/sub), or a sink
            without ``receive_webhook``.
    """

    def __init__(
        self,
        url_or_client: str | redis.asyncio.Redis,
        *,
        channel: str = DEFAULT_CHANNEL,
        batchers: Iterable[WebhookSink] = (),
        events: Collection[str] | None = (RewardBatchCompleted.event,),
    ) -> None:
        if not channel:
            raise ValueError("the relay's channel must not be empty")
        self.channel = channel
        self._url: str | None = None
        self._redis: redis.asyncio.Redis | None = None
        if isinstance(url_or_client, str):
            self._url = url_or_client
            self._connection()  # a malformed URL fails here, not at the first event
        elif isinstance(url_or_client, redis.asyncio.Redis):
            self._redis = url_or_client
        else:
            raise TypeError(
                "WebhookRelay takes a Redis URL or a redis.asyncio.Redis, "
                f"not {type(url_or_client).__name__}"
            )
        self._events = None if events is None else frozenset(events)
        self._sinks = SinkRelay(batchers)
        # This process among the fleet: its own messages come back, and are skipped.
        self._origin = secrets.token_hex(8).encode()
        self._outbox: list[bytes] = []
        self._sending: list[bytes] = []  # the batch being published
        self._publisher: asyncio.Task[None] | None = None
        self._subscriber: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._closed = False
        self._ever_subscribed = False
        self.published = 0
        self.relayed = 0
        self.lost = 0
        self.malformed = 0
        self.reconnects = 0

    def __repr__(self) -> str:
        # The URL may hold a password: never shown.
        state = "closed" if self._closed else "subscribed" if self.subscribed else "idle"
        return f"<WebhookRelay channel={self.channel!r} sinks={len(self.sinks)} {state}>"

    def _connection(self) -> redis.asyncio.Redis:
        if self._redis is None:
            assert self._url is not None  # for mypy: one of them is always set
            self._redis = redis.asyncio.Redis.from_url(
                self._url,
                socket_timeout=_SOCKET_TIMEOUT,
                socket_connect_timeout=_SOCKET_TIMEOUT,
                retry=Retry(NoBackoff(), 1),
            )
        return self._redis

    # -- sinks ------------------------------------------------------------------

    @property
    def sinks(self) -> tuple[WebhookSink, ...]:
        """The attached batchers (and other sinks), in order."""
        return self._sinks.sinks

    def attach(self, batcher: WebhookSink) -> None:
        """Hand ``batcher`` every event: received here, or relayed from another process.

        Calls the batcher's ``expect_webhooks()`` (when it has one): its jobs'
        safety-net polls move to after their predicted end plus a grace.

        Raises:
            TypeError: ``batcher`` has no callable ``receive_webhook``.
        """
        self._sinks.add(batcher)

    def detach(self, batcher: WebhookSink) -> None:
        """Stop handing events to ``batcher`` (no-op if it is not attached)."""
        self._sinks.remove(batcher)

    @property
    def subscribed(self) -> bool:
        """Whether the relay is subscribed to the channel right now."""
        return self._subscribed.is_set()

    # -- the sink side: events this process received ---------------------------------

    def receive_webhook(self, event: WebhookEvent) -> bool:
        """Hand a verified event to the attached batchers, and publish it to the fleet.

        Called by a :class:`~thanx_async.webhooks.WebhookReceiver` (on the event
        loop, after the delivery was answered). Publishing happens in the
        background, batched per loop turn, retried while Redis does not answer
        (for 10 s at most).

        Returns:
            Whether the event is one the relay publishes (and the relay is open).
        """
        loop = asyncio.get_running_loop()
        self._sinks.post(event, loop)
        if self._closed or (self._events is not None and event.event not in self._events):
            return False
        if len(self._outbox) >= _MAX_OUTBOX:
            self.lost += 1
            return False
        self._outbox.append(_MAGIC + self._origin + b"\n" + _envelope(event))
        if self._publisher is None or self._publisher.done():
            self._publisher = loop.create_task(self._publish(), name="thanx-webhook-relay-publish")
        return True

    async def _publish(self) -> None:
        """Publish what is in the outbox, batch by batch, until it is empty."""
        loop = asyncio.get_running_loop()
        while self._outbox:
            batch = self._sending = self._outbox
            self._outbox = []
            give_up = loop.time() + _PATIENCE
            for attempt in itertools.count(1):
                try:
                    async with self._connection().pipeline(transaction=False) as pipe:
                        for message in batch:
                            pipe.publish(self.channel, message)
                        await pipe.execute()
                except TRANSIENT as exc:
                    wait = backoff(attempt)
                    if loop.time() + wait <= give_up:
                        await asyncio.sleep(wait)
                        continue
                    self._lose(batch, type(exc).__name__)
                except Exception:  # a background task must never die silently
                    logger.exception("cannot publish webhook events on %r", self.channel)
                    self._lose(batch, "an error")
                else:
                    # A retried pipeline may have published some twice: harmless,
                    # batchers ignore a second event for a job they finished.
                    self.published += len(batch)
                break
        self._sending = []

    def _lose(self, batch: list[bytes], why: str) -> None:
        if not batch:
            return
        self.lost += len(batch)
        logger.warning(
            "could not publish %d webhook event(s) on %r (%s); other processes will poll "
            "for those jobs",
            len(batch), self.channel, why,
        )  # fmt: skip

    # -- the subscriber side: events other processes received ---------------------------

    async def start(self, timeout: float = 10.0) -> bool:
        """Subscribe to the channel (in the background, for good), waiting up to ``timeout`` s.

        If Redis cannot be reached yet, the relay keeps trying in the
        background (a warning is logged) and its batchers poll meanwhile.
        Calling it again is harmless.

        Returns:
            Whether the relay is subscribed.

        Raises:
            RuntimeError: the relay was closed.
        """
        if self._closed:
            raise RuntimeError("the WebhookRelay is closed")
        if self._subscriber is None:
            self._subscriber = asyncio.get_running_loop().create_task(
                self._subscribe_forever(), name="thanx-webhook-relay-subscribe"
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), timeout)
        if not self.subscribed:
            logger.warning(
                "the webhook relay could not subscribe to %r within %g s; still trying "
                "(meanwhile jobs are polled)",
                self.channel, timeout,
            )  # fmt: skip
        return self.subscribed

    async def _subscribe_forever(self) -> None:
        """Subscribe, read, and on any failure subscribe again (with backoff), until cancelled."""
        failures = 0
        while True:
            pubsub = self._connection().pubsub()
            try:
                await pubsub.subscribe(self.channel)
                while True:
                    message = await pubsub.get_message(timeout=None)
                    if message is None:
                        continue
                    if message["type"] == "subscribe":
                        self._now_subscribed()
                        failures = 0
                    elif message["type"] == "message":
                        self._hand_on(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - this task must never die: log, retry
                failures += 1
                self._lost_subscription(exc, failures)
            finally:
                self._subscribed.clear()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(backoff(failures))

    def _now_subscribed(self) -> None:
        if self._ever_subscribed:
            self.reconnects += 1
            logger.info("the webhook relay is subscribed to %r again", self.channel)
        self._ever_subscribed = True
        self._subscribed.set()

    def _lost_subscription(self, exc: Exception, failures: int) -> None:
        if not isinstance(exc, TRANSIENT):
            logger.error("the webhook relay failed; subscribing again", exc_info=exc)
        elif failures == 1:  # once per outage
            logger.warning(
                "the webhook relay cannot read Redis (%s); subscribing again. Events "
                "published meanwhile are lost here: their jobs are polled",
                type(exc).__name__,
            )

    def _hand_on(self, raw: Any) -> None:
        """One message from the channel: skip our own, hand the others' events to the sinks."""
        if not isinstance(raw, bytes) or not raw.startswith(_MAGIC):
            self._malformed("not a thanx_async webhook message")
            return
        header, _, body = raw.partition(b"\n")
        if header[len(_MAGIC) :] == self._origin:
            return  # ours: the local batchers had it already
        try:
            event = decode_event(body)
        except WebhookPayloadError as error:
            self._malformed(str(error))
            return
        self.relayed += 1
        self._sinks.post(event, asyncio.get_running_loop())

    def _malformed(self, why: str) -> None:
        self.malformed += 1
        if self.malformed == 1 or self.malformed % 1000 == 0:
            logger.warning(
                "ignored %d unreadable message(s) on the webhook channel %r: %s",
                self.malformed, self.channel, why,
            )  # fmt: skip

    # -- lifetime ---------------------------------------------------------------

    async def aclose(self, timeout: float = 5.0) -> None:
        """Stop subscribing, let pending publications land (up to ``timeout`` s), close.

        Closes the connection the relay opened from a URL, never a client it was
        given. Idempotent.
        """
        self._closed = True
        subscriber, self._subscriber = self._subscriber, None
        if subscriber is not None:
            subscriber.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await subscriber
        publisher = self._publisher
        if publisher is not None and not publisher.done():
            done, _ = await asyncio.wait({publisher}, timeout=timeout)
            if not done:
                publisher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await publisher
                self._lose([*self._sending, *self._outbox], "closed before Redis answered")
                self._sending, self._outbox = [], []
        if self._url is not None and self._redis is not None:
            own, self._redis = self._redis, None
            await own.aclose()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
