"""Handing accepted events to the sinks (batchers), after the delivery was answered."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Iterable
from typing import Any, Protocol, runtime_checkable

from thanx_async.webhooks._events import UnknownEvent, WebhookEvent

__all__ = ["SinkRelay", "WebhookSink"]

logger = logging.getLogger("thanx_async.webhooks")


@runtime_checkable
class WebhookSink(Protocol):
    """What a :class:`WebhookReceiver` hands verified, new events to (``RewardBatcher`` is one).

    ``receive_webhook`` is called on the event loop, after the delivery was
    answered, once per sink and event. It must not block: do the little that
    is needed (resolve futures, schedule a task) and return whether the event
    concerned this sink (used for statistics only). It may raise: the
    receiver logs the error and carries on. An ``async def`` implementation
    also works (it is run as a task); a plain method returning ``bool`` is
    the expected, cheapest form.
    """

    def receive_webhook(self, event: WebhookEvent) -> bool | Awaitable[bool]:
        """Act on ``event``; ``True`` if it was for this sink (e.g. a job it waits on)."""
        ...


def _job_of(event: WebhookEvent) -> str:
    return "-" if isinstance(event, UnknownEvent) else event.issuance_job_id


class SinkRelay:
    """Calls every sink with every event, on the loop turn after it was accepted.

    Events accepted during one loop turn are handed on by one scheduled
    callback (a flood of ``reward.issued`` costs one call per turn, not one
    per delivery). A sink that raises is logged and counted, never allowed
    to stop the others; an awaitable result is run as a task.

    Attributes:
        claimed: events at least one sink said were its own.
        errors: exceptions raised by sinks.
    """

    def __init__(self, sinks: Iterable[WebhookSink] = ()) -> None:
        self._sinks: list[WebhookSink] = []
        for sink in sinks:
            self.add(sink)
        self.claimed = 0
        self.errors = 0
        self._inbox: list[WebhookEvent] = []
        self._flush_loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Future[Any]] = set()

    @property
    def sinks(self) -> tuple[WebhookSink, ...]:
        """The sinks, in order."""
        return tuple(self._sinks)

    def add(self, sink: WebhookSink) -> None:
        """Add a sink; ``TypeError`` if it has no callable ``receive_webhook``."""
        if not callable(getattr(sink, "receive_webhook", None)):
            raise TypeError(
                f"{type(sink).__name__} cannot receive webhooks: it has no receive_webhook(event)"
            )
        self._sinks.append(sink)
        # A batcher told webhooks are coming moves each job's safety-net poll to
        # after its predicted end plus a grace: a job whose webhook arrives costs no poll.
        expect = getattr(sink, "expect_webhooks", None)
        if callable(expect):
            expect()

    def remove(self, sink: WebhookSink) -> None:
        """Remove a sink (no-op if absent)."""
        if sink in self._sinks:
            self._sinks.remove(sink)

    def post(self, event: WebhookEvent, loop: asyncio.AbstractEventLoop) -> None:
        """Hand ``event`` to every sink on a later turn of ``loop``."""
        self._inbox.append(event)
        # A flush scheduled on a loop that has since gone (a receiver reused
        # across asyncio.run calls) must not strand events: schedule anew.
        if self._flush_loop is not loop:
            self._flush_loop = loop
            loop.call_soon(self._flush)

    def _flush(self) -> None:
        events, self._inbox = self._inbox, []
        self._flush_loop = None
        for event in events:
            self._dispatch(event)

    def _dispatch(self, event: WebhookEvent) -> None:
        claimed = False
        for sink in tuple(self._sinks):
            try:
                result: Any = sink.receive_webhook(event)
            except Exception:  # noqa: BLE001 - a sink's bug must never break the receiver
                self._failed(sink, event)
                continue
            if inspect.isawaitable(result):
                self._follow(sink, event, result)
            elif result:
                claimed = True
        if claimed:
            self.claimed += 1

    def _follow(self, sink: WebhookSink, event: WebhookEvent, result: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(result)
        self._tasks.add(task)

        def done(task: asyncio.Future[Any]) -> None:
            self._tasks.discard(task)
            if task.cancelled():
                return
            error = task.exception()
            if error is not None:
                self._failed(sink, event, error)
            elif task.result():
                self.claimed += 1

        task.add_done_callback(done)

    def _failed(
        self, sink: WebhookSink, event: WebhookEvent, error: BaseException | None = None
    ) -> None:
        self.errors += 1
        # The event's repr is left out: it names people (failures by value).
        logger.error(
            "webhook sink %s failed on %s for job %s",
            type(sink).__name__,
            event.event,
            _job_of(event),
            exc_info=error if error is not None else True,
        )
