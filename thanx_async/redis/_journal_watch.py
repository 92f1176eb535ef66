"""Watching items of any process end: one pub/sub subscription, a future per watcher.

The journal publishes on its channel when a batch finishes (its item ids) and
when items are forgotten. Each process subscribes once, whatever it watches,
and keeps its watchers in a dict keyed by item id, so a message costs one
dict lookup per item it names, and watching 10,000 items costs 10,000 dict
entries.

No end is missed:

* a watch checks the item's state *after* registering (its end may have
  been published before), and every check happens while subscribed or is
  repeated once subscribed again;
* every (re)subscription, including redis-py's own after a dropped
  connection, checks every watched item again (ends published while the
  subscription was down);
* a check that could not reach Redis is repeated by the heartbeat.

Checks asked for during one loop turn go to Redis together.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import redis.asyncio.client

from thanx_async._errors import JournalError
from thanx_async._journal_format import Recorded
from thanx_async.redis._errands import TRANSIENT, backoff
from thanx_async.redis._journal_codec import UNFINISHED, Answer, text

__all__ = ["Watchers"]

logger = logging.getLogger("thanx_async.journal")

#: How long one read of the subscription waits before looking again.
_READ_TIMEOUT = 1.0


class Watchers:
    """The watched items of one journal and the subscription that tells of their end.

    Args:
        check: answers for item ids (a script call); raises JournalError.
        pubsub: a new ``PubSub`` of the journal's connection.
        channel: the journal's channel.
        name: the journal's name, for logs.
    """

    def __init__(
        self,
        check: Callable[[list[int]], Awaitable[list[Answer]]],
        pubsub: Callable[[], redis.asyncio.client.PubSub],
        channel: str,
        name: str,
    ) -> None:
        self._check = check
        self._pubsub = pubsub
        self._channel = channel
        self._name = name
        self._futures: dict[int, list[asyncio.Future[Recorded | None]]] = {}
        self._to_check: set[int] = set()
        self._unchecked: set[int] = set()
        self._checker: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._futures)

    def start(self) -> None:
        """Subscribe (in the background; :attr:`subscribed` is set once Redis confirmed)."""
        self._listener = asyncio.get_running_loop().create_task(
            self._listen(), name=f"thanx_async journal {self._name} subscription"
        )

    async def close(self, error: JournalError) -> None:
        """Stop listening; every watcher still waiting gets ``error``."""
        tasks = [t for t in (self._listener, self._checker) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        futures, self._futures = self._futures, {}
        for waiting in futures.values():
            for future in waiting:
                if not future.done():
                    future.set_exception(error)

    def watch(self, item_id: int) -> asyncio.Future[Recorded | None]:
        """A future resolving when the item ends (see ``FleetJournal.watch``)."""
        future: asyncio.Future[Recorded | None] = asyncio.get_running_loop().create_future()
        self._futures.setdefault(item_id, []).append(future)
        future.add_done_callback(functools.partial(self._discard, item_id))
        self._schedule((item_id,))
        return future

    def recheck(self) -> None:
        """Check every watched item again (after Redis may have been out of reach)."""
        self._schedule(self._futures)

    def retry(self) -> None:
        """Check again the items whose last check could not reach Redis."""
        if self._unchecked:
            ids, self._unchecked = self._unchecked, set()
            self._schedule(ids)

    def _discard(self, item_id: int, future: asyncio.Future[Recorded | None]) -> None:
        waiting = self._futures.get(item_id)
        if waiting is not None and future in waiting:
            waiting.remove(future)
            if not waiting:
                del self._futures[item_id]

    def _resolve(self, item_id: int, result: Recorded | None) -> None:
        for future in self._futures.pop(item_id, ()):
            if not future.done():
                future.set_result(result)

    # -- checking state ------------------------------------------------------

    def _schedule(self, ids: Iterable[int]) -> None:
        self._to_check.update(ids)
        if self._to_check and self._checker is None:
            self._checker = asyncio.get_running_loop().create_task(
                self._run_checks(), name=f"thanx_async journal {self._name} watch"
            )

    async def _run_checks(self) -> None:
        try:
            while self._to_check:
                await asyncio.sleep(0)  # let this loop turn ask for its checks too
                ids = [i for i in self._to_check if i in self._futures]
                self._to_check.clear()
                if not ids:
                    continue
                try:
                    results = await self._check(ids)
                except JournalError as exc:
                    logger.warning(
                        "journal %r: could not check %d watched items (%s); trying again later",
                        self._name, len(ids), exc,
                    )  # fmt: skip
                    self._unchecked.update(ids)
                    continue
                except Exception:  # a background task never dies silently
                    logger.exception("journal %r: checking watched items failed", self._name)
                    self._unchecked.update(ids)
                    continue
                for item_id, result in zip(ids, results, strict=True):
                    if result is None or isinstance(result, Recorded):
                        self._resolve(item_id, result)
                    elif result is not UNFINISHED:  # pragma: no cover - the script answers so
                        logger.error("journal %r: odd answer %r", self._name, result)
        finally:
            self._checker = None

    # -- the subscription ------------------------------------------------------

    async def _listen(self) -> None:
        failures = 0
        while True:
            pubsub = self._pubsub()
            try:
                await pubsub.subscribe(self._channel)
                while True:
                    message = await pubsub.get_message(timeout=_READ_TIMEOUT)
                    if message is not None:
                        failures = 0
                        self._on_message(message)
            except TRANSIENT as exc:
                failures += 1
                if failures == 1:
                    logger.warning(
                        "journal %r: lost its subscription (%s); watched items are checked"
                        " again once it is back",
                        self._name, type(exc).__name__,
                    )  # fmt: skip
            except Exception:  # a background task never dies silently
                failures += 1
                logger.exception("journal %r: its subscription failed", self._name)
            finally:
                self.subscribed.clear()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(backoff(failures))

    def _on_message(self, message: dict[str, Any]) -> None:
        kind = text(message.get("type"))
        if kind == "subscribe":
            # Also redis-py's own resubscription after a reconnect: anything
            # published meanwhile was missed, so every watched item is checked.
            self.subscribed.set()
            self.recheck()
            return
        if kind != "message" or not self._futures:
            return
        data = text(message.get("data"))
        event, _, rest = data.partition(" ")
        if event == "f":  # 'f <bid> <ids>': finished; the check reads the result
            _, _, ids = rest.partition(" ")
            self._schedule(self._watched(ids))
        elif event == "x":  # forgotten: nothing was issued
            for item_id in self._watched(rest):
                self._resolve(item_id, None)

    def _watched(self, runs: str) -> list[int]:
        """The watched ids among ``runs`` (``'5-9,12'``)."""
        futures = self._futures
        found: list[int] = []
        for run in filter(None, runs.split(",")):
            first, _, last = run.partition("-")
            low, high = int(first), int(last or first)
            if high - low < len(futures):
                found += (i for i in range(low, high + 1) if i in futures)
            else:  # a long run and few watchers: look at the watchers instead
                found += (i for i in futures if low <= i <= high)
        return found
