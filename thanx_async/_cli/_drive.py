"""The run loop shared by ``issue`` and ``demo``: feed, flush, wait, or stop on Ctrl-C.

A run has three phases, each of which a first Ctrl-C (or SIGTERM) cuts short:
feeding identifiers to the batcher, flushing (every batch sent), and waiting
for every outcome. After an interruption the caller closes the batcher, which
stops admission, sends what is sealed and waits its ``close_timeout`` for jobs;
whatever is still open then is reported as unresolved. :class:`StopSignal` turns
the signals into that request (and a second one into an abort).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Coroutine
from typing import Any

import attrs

from thanx_async._batcher import RewardBatcher
from thanx_async._cli._progress import Tally
from thanx_async._cli._report import Status, classify
from thanx_async._errors import BatcherClosedError
from thanx_async._identifiers import Identifier
from thanx_async._outcomes import IssuanceOutcome

__all__ = ["Outstanding", "StopSignal", "drive", "quiet_closed_futures", "race"]

#: What a settled submission reports: (line or index, identifier, status, job id, error).
OnSettled = Callable[[int, Identifier | None, Status, str | None, str | None], None]


def quiet_closed_futures(loop: asyncio.AbstractEventLoop) -> None:
    """Keep asyncio from printing futures failed with BatcherClosedError that nobody awaited.

    When a batcher closes with jobs still followed, their internal futures
    fail with :class:`BatcherClosedError`; the command reports those
    identifiers as unresolved, so asyncio's "exception was never retrieved"
    lines would only be noise.
    """
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if isinstance(context.get("exception"), BatcherClosedError):
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


class StopSignal:
    """Ctrl-C and SIGTERM as an event: the first asks the command to wind down, a second aborts.

    Use as a context manager inside the running loop; it restores the previous
    handlers on exit. Where the loop cannot install signal handlers (not the
    main thread, Windows), Python's default KeyboardInterrupt stays in place.
    """

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.count = 0
        self._task: asyncio.Task[object] | None = None
        self._installed: list[signal.Signals] = []

    def __enter__(self) -> StopSignal:
        loop = asyncio.get_running_loop()
        quiet_closed_futures(loop)
        self._task = asyncio.current_task()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signum, self.trigger)
                self._installed.append(signum)
        return self

    def __exit__(self, *exc_info: object) -> None:
        loop = asyncio.get_running_loop()
        for signum in self._installed:
            loop.remove_signal_handler(signum)
        self._installed.clear()

    def trigger(self) -> None:
        """What a signal does: set the event the first time, cancel the command the second."""
        self.count += 1
        if self.count == 1:
            self.event.set()
        elif self._task is not None:
            self._task.cancel()

    @property
    def is_set(self) -> bool:
        """Whether the command was asked to stop."""
        return self.event.is_set()


async def race(awaitable: asyncio.Future[Any], stop: StopSignal) -> bool:
    """Wait for ``awaitable`` or the stop signal; True when stopped first."""
    if stop.is_set:
        return not awaitable.done()
    waiter = asyncio.ensure_future(stop.event.wait())
    try:
        await asyncio.wait({awaitable, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiter
    return not awaitable.done()


async def _cancel(task: asyncio.Future[Any]) -> None:
    if not task.done():
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def drive(
    feed: Coroutine[Any, Any, None], batcher: RewardBatcher, tally: Tally, stop: StopSignal
) -> bool:
    """Run ``feed`` to its end, flush the batcher and wait for every outcome.

    Errors of ``feed`` propagate. Returns True when interrupted (the caller
    then closes the batcher and reports what is unresolved).
    """
    feeder = asyncio.ensure_future(feed)
    try:
        if await race(feeder, stop):
            return True
        feeder.result()
    finally:
        await _cancel(feeder)
    tally.feeding_done = True
    tally.check_settled()
    for phase in (batcher.flush, tally.all_settled.wait):
        task = asyncio.ensure_future(phase())
        try:
            if await race(task, stop):
                return True
        finally:
            await _cancel(task)
    return False


@attrs.define
class Outstanding:
    """Submissions whose outcome has not arrived, and what to do when each does.

    Args:
        tally: counters to update.
        on_settled: also told about every settled submission (e.g. the report).
    """

    tally: Tally
    on_settled: OnSettled | None = None
    _waiting: dict[asyncio.Future[IssuanceOutcome], tuple[int, Identifier | None]] = attrs.field(
        factory=dict, init=False
    )

    def add(
        self, future: asyncio.Future[IssuanceOutcome], ref: int, ident: Identifier | None = None
    ) -> None:
        """Follow one submission (``ref`` is its line or index, ``ident`` what was submitted)."""
        self.tally.submitted += 1
        self._waiting[future] = (ref, ident)
        future.add_done_callback(self._settled)

    def _settled(self, future: asyncio.Future[IssuanceOutcome]) -> None:
        status, job_id, error = classify(future)  # also marks an exception as retrieved
        entry = self._waiting.pop(future, None)
        if entry is None:
            return
        self._count(status)
        if self.on_settled is not None:
            self.on_settled(entry[0], entry[1], status, job_id, error)
        self.tally.check_settled()

    def _count(self, status: Status) -> None:
        tally = self.tally
        if status is Status.ISSUED:
            tally.issued += 1
        elif status is Status.UNKNOWN:
            tally.unknown += 1
        elif status is Status.UNRESOLVED:
            tally.unresolved += 1
        else:
            tally.failed += 1

    async def abandon(self) -> int:
        """Count every submission still waiting as unresolved (after the batcher closed)."""
        await asyncio.sleep(0)  # let the done-callbacks of futures the close failed run first
        left = list(self._waiting.items())
        self._waiting.clear()
        for _future, (ref, ident) in left:
            self.tally.unresolved += 1
            if self.on_settled is not None:
                self.on_settled(
                    ref, ident, Status.UNRESOLVED, None, "no outcome before the command stopped"
                )
        return len(left)
