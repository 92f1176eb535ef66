"""RedisRateLimiter: one credential's rate budget shared by every process, kept in Redis.

The counting rules are the in-process limiter's (:mod:`thanx_async._transport._ratelog`),
run by the scripts of :mod:`._scripts` on the Redis server's clock.

Waiting: requests of this process queue FIFO in two classes, foreground and
background (job polls). Only the head of each class asks Redis; a refused head
sleeps the wait the script computed (plus a little jitter, so processes waiting
for the same instant do not all ask at once) and asks again; it never spins.
Between classes, and between processes, the script decides: while any
process has foreground requests waiting, background ones get at most every
third grant (and are not starved: when it is their turn, waiting foreground
requests wake a little later than them).

Redis unreachable: nothing is sent. The heads retry with backoff; once Redis
has not answered for ``unreachable_timeout`` seconds, waiting requests fail with
:class:`~thanx_async.TransportError` (and later ones after one more attempt),
until Redis answers again. The caller's deadline may end the wait sooner:
every wait here can be cancelled without leaking a grant or a registration.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import random
import secrets
import time
from typing import TYPE_CHECKING, Self

try:
    import redis.asyncio
    import redis.exceptions
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
except ImportError as exc:  # pragma: no cover - the extra is installed wherever tests run
    raise ImportError("thanx_async.redis needs redis-py: pip install 'thanx-async[redis]'") from exc

from thanx_async._config import RateLimit, low_water
from thanx_async._errors import TransportError
from thanx_async._transport._ratelimit import LimiterStats, Slot
from thanx_async.redis._budget import Budget
from thanx_async.redis._errands import TRANSIENT, Errands, backoff
from thanx_async.redis._queue import WaitingLine
from thanx_async.redis._scripts import budget_keys

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["RedisRateLimiter"]

logger = logging.getLogger("thanx_async.redis")

#: The most a refused request sleeps beyond its computed wait.
_JITTER = 0.01
#: How much later than the polls a foreground request wakes when it is their turn.
_DEFER = 2 * _JITTER
#: How long a release, a discard or a 429 report keeps trying to reach Redis.
_PATIENCE = 300.0
#: How long a head waits for this process's 429 report to reach Redis before asking.
_PENALTY_WAIT = 1.0
#: How long aclose() waits for those to land.
_CLOSE_GRACE = 5.0
#: The socket timeouts of a connection the limiter opens itself (a script takes
#: well under a millisecond; an unanswered one should fail fast and be retried).
_SOCKET_TIMEOUT = 5.0


class _RedisSlot:
    __slots__ = ("_background", "_limiter", "renewal", "request_id")

    def __init__(self, limiter: RedisRateLimiter, background: bool) -> None:
        self._limiter = limiter
        self._background = background
        self.renewal: asyncio.TimerHandle | None = None
        self.request_id = ""

    async def __aenter__(self) -> Slot:
        self.request_id = await self._limiter._acquire(self._background)
        self._limiter._entered(self)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._limiter._exited(self)

    def rate_limited(self, retry_after: float | None = None) -> None:
        self._limiter._rate_limited(retry_after)


class RedisRateLimiter:
    """A rate limiter whose budget is shared, through Redis, by every process on one credential.

    Drop-in for the in-process limiter: give it to :class:`~thanx_async.ThanxClient`
    as ``limiter=``, in every process (web workers, replicas, hosts) that uses
    the credential. All of them then share Thanx's two windows, with the
    in-process limiter's rules, fleet-wide:

    - one sliding log per credential, checked and written by one atomic script
      per request on the Redis server's clock (the hosts' clocks never matter);
    - a request counts from its grant until a full window after its response,
      so the server never sees either window exceeded;
    - a refused request sleeps exactly the computed wait (with a little jitter);
    - a 429 anywhere pauses every process (for at most the long window; a
      ``Retry-After`` is honoured up to that cap);
    - while any process has POSTs waiting, polls get about a third of the budget;
    - a request of a process that died counts as finished ``lease`` seconds
      after its last sign of life (long requests renew their lease).

    If Redis cannot be reached, nothing is sent: requests wait and retry, and
    fail with :class:`~thanx_async.TransportError` once Redis has not answered
    for ``unreachable_timeout`` seconds (or at their own deadline, if sooner).

    Args:
        url_or_client: a Redis URL (``redis://``, ``rediss://``, ``unix://``),
            or a ``redis.asyncio.Redis`` / ``RedisCluster`` to use (it is not
            closed by :meth:`aclose`).
        rate_limit: the credential's budget; every process must pass the same one.
        client_id: the credential's ``X-ClientId``. Optional: a
            :class:`~thanx_async.ThanxClient` given this limiter tells it its own.
        key: names the budget instead of the client id (e.g. several
            environments on one Redis with one credential each); no braces.
        lease: seconds a request counts as in flight without news from its process.
        unreachable_timeout: seconds of unanswered attempts to reach Redis after
            which waiting requests fail.

    Raises:
        ValueError: both ``client_id`` and ``key`` given, a ``key`` with braces,
            a ``lease`` / ``unreachable_timeout`` that is not > 0, or a
            malformed URL.
        TypeError: neither a URL nor a ``redis.asyncio`` client (a synchronous
            ``redis.Redis`` cannot serve an asyncio limiter).

    Example::

        import thanx_async as ta
        from thanx_async.redis import RedisRateLimiter

        client = ta.ThanxClient(
            client_id=..., access_token=...,
            limiter=RedisRateLimiter("redis://127.0.0.1:6379/0", rate_limit=ta.RateLimit()),
        )
        async with client:  # closing the client closes the limiter's connection
            ...
    """

    def __init__(
        self,
        url_or_client: str | redis.asyncio.Redis | redis.asyncio.RedisCluster,
        *,
        rate_limit: RateLimit | None = None,
        client_id: str | None = None,
        key: str | None = None,
        lease: float = 15.0,
        unreachable_timeout: float = 30.0,
    ) -> None:
        if client_id is not None and key is not None:
            raise ValueError("pass client_id or key, not both")
        if not lease > 0 or not unreachable_timeout > 0:
            raise ValueError("lease and unreachable_timeout must be > 0")
        self.rate_limit = rate_limit or RateLimit()
        self._url: str | None = None
        self._redis: redis.asyncio.Redis | redis.asyncio.RedisCluster | None = None
        if isinstance(url_or_client, str):
            self._url = url_or_client
            self._connection()  # a malformed URL fails here, not at the first request
        elif isinstance(url_or_client, redis.asyncio.Redis | redis.asyncio.RedisCluster):
            self._redis = url_or_client
        else:
            raise TypeError(
                "RedisRateLimiter takes a Redis URL or a redis.asyncio client, "
                f"not {type(url_or_client).__name__}"
            )
        self._lease = lease
        self._unreachable_timeout = unreachable_timeout
        self._token = secrets.token_hex(6)  # this process (limiter) among the fleet
        self._ids = itertools.count()
        self._budget: Budget | None = None
        self._client_id: str | None = None
        self._key = key
        if key is not None:
            self._budget = self._new_budget(budget_keys(key=key))
        elif client_id is not None:
            self.bind(client_id)
        self._short_span = self.rate_limit.short_window[0]
        self._low_water = low_water(self.rate_limit)
        self._queues = (WaitingLine(background=False), WaitingLine(background=True))
        self._outage: float | None = None  # loop time of the first unanswered attempt
        #: Until when (monotonic) the last answer's "less than a short window's budget
        #: left in the long window" holds: a short window, then a request must ask again.
        self._low_until = 0.0
        self._long_left: int | None = None  # what the last answer left of the long window
        self._penalties: set[asyncio.Task[None]] = set()
        self._errands = Errands()
        self._in_flight = self._queued = 0
        self._granted = self._waited = self._rate_limited_count = 0
        self._wait_seconds = 0.0

    def __repr__(self) -> str:
        # The URL may hold a password: never shown.
        name = "unbound" if self._budget is None else self._budget.keys[0].rsplit(":", 1)[0]
        return f"RedisRateLimiter({name!r}, rate_limit={self.rate_limit!r})"

    def _new_budget(self, keys: list[str]) -> Budget:
        return Budget(self._connection, keys, self.rate_limit, self._lease, self._token)

    def _connection(self) -> redis.asyncio.Redis | redis.asyncio.RedisCluster:
        if self._redis is None:
            assert self._url is not None  # for mypy: one of them is always set
            # One immediate retry on a broken pooled connection (a restarted Redis);
            # the limiter's own backoff does the rest.
            self._redis = redis.asyncio.Redis.from_url(
                self._url,
                socket_timeout=_SOCKET_TIMEOUT,
                socket_connect_timeout=_SOCKET_TIMEOUT,
                retry=Retry(NoBackoff(), 1),
            )
        return self._redis

    def bind(self, client_id: str) -> None:
        """Budget for this credential (called by the :class:`~thanx_async.ThanxClient` given it).

        Without ``key``, the budget's Redis keys derive from the client id's
        SHA-256, so every process on the credential shares them.

        Raises:
            ValueError: the limiter already budgets another client id (one
                limiter, one credential).
        """
        if self._key is not None:
            return  # an explicit key names the budget
        if self._client_id is None:
            self._client_id = client_id
            self._budget = self._new_budget(budget_keys(client_id=client_id))
        elif client_id != self._client_id:
            raise ValueError("this RedisRateLimiter already budgets another client_id")

    @property
    def saturated(self) -> bool:
        """Whether the budget binds: cheap, synchronous, no Redis round trip.

        True while a request of this process waits for budget, or for one short
        window after an answer from Redis left less than one short window's
        worth of requests in the long window. Only for a short window: the
        fleet's budget frees as its requests age out, and no answer comes
        while this says True and nothing is sent (a batcher then keeps
        filling its batches instead of sending them), so a stale "low" would
        hold every batch back until one reached 10,000.

        Example::

            if limiter.saturated:
                ...  # the budget binds: fuller batches are worth more than early ones
        """
        return time.monotonic() < self._low_until or any(q.refused for q in self._queues)

    def slot(self, *, background: bool = False) -> contextlib.AbstractAsyncContextManager[Slot]:
        """Wait for budget (FIFO within the class, in this process); see ``RateLimiter.slot``.

        Args:
            background: a job poll, which yields to waiting foreground requests fleet-wide.

        Raises:
            TransportError: Redis could not be reached (nothing was sent).
            ValueError: the limiter knows no client id (pass ``client_id`` or
                give it to a :class:`~thanx_async.ThanxClient`).

        Example::

            async with limiter.slot() as slot:
                response = await send()
                if response.status == 429:
                    slot.rate_limited(retry_after)  # pauses every process
        """
        return _RedisSlot(self, background)

    def stats(self) -> LimiterStats:
        """This process's counters (the fleet's budget is in Redis).

        Example::

            stats = limiter.stats()
            print(stats.granted, stats.waited, stats.wait_seconds, stats.rate_limited)
        """
        return LimiterStats(
            granted=self._granted,
            waited=self._waited,
            wait_seconds=self._wait_seconds,
            rate_limited=self._rate_limited_count,
            in_flight=self._in_flight,
            queued=self._queued,
            budget_used=None
            if self._long_left is None
            else min(1.0, max(0.0, 1 - self._long_left / self.rate_limit.per_window)),
        )

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
        """Let pending releases reach Redis, then close the connection the limiter opened.

        Waits up to 5 seconds for releases and 429 reports still on their way
        to Redis. A client passed in stays open. The limiter stays usable: it
        reconnects when asked for budget again.
        """
        await self._errands.drain(_CLOSE_GRACE)
        if self._url is not None and self._redis is not None:
            own, self._redis = self._redis, None
            await own.aclose()

    # -- waiting for budget ------------------------------------------------

    async def _acquire(self, background: bool) -> str:
        budget = self._budget
        if budget is None:
            raise ValueError(
                "RedisRateLimiter needs the credential: pass client_id= (or key=), "
                "or give the limiter to a ThanxClient"
            )
        loop = asyncio.get_running_loop()
        started = loop.time()
        queue = self._queues[background]
        waiter = queue.join(loop)
        self._queued += 1
        waited = not waiter.turn.done()
        if waited:
            self._waited += 1
        granted = head = False
        try:
            await waiter.turn
            head = True
            request_id, refused = await self._ask(budget, queue)
            granted = True
            if refused and not waited:
                waited = True
                self._waited += 1
            return request_id
        finally:
            queue.leave(waiter)
            if head:
                queue.refused = False
            self._queued -= 1
            if waited:
                self._wait_seconds += loop.time() - started
            if not granted and not queue.alive and queue.registered:
                # The last waiting request of its class gave up: the other class
                # need not leave room for it any more.
                queue.registered = False
                self._errands.run(
                    functools.partial(budget.unregister, background), "unregister", _PATIENCE
                )

    async def _ask(self, budget: Budget, queue: WaitingLine) -> tuple[str, bool]:
        """As the head of ``queue``: ask until granted; returns the id and whether refused."""
        background = queue.background
        refused = False
        failures = 0
        while True:
            if self._penalties:
                # A 429 this process just saw should be in Redis before it asks again
                # (not for long: if Redis is down, asking fails and is retried anyway).
                await asyncio.wait(set(self._penalties), timeout=_PENALTY_WAIT)
            request_id = f"{self._token}:{next(self._ids):x}"
            more = queue.alive > 1
            try:
                grant = await budget.grant(request_id, background=background, more=more)
            except asyncio.CancelledError:
                # The grant may have been recorded before we stopped listening.
                self._discard(budget, request_id)
                raise
            except (
                redis.exceptions.AuthenticationError,
                redis.exceptions.AuthorizationError,
            ) as exc:  # a wrong password does not heal by waiting
                raise TransportError(
                    f"the rate budget in Redis refused this client ({type(exc).__name__}); "
                    "nothing was sent"
                ) from exc
            except TRANSIENT as exc:
                if isinstance(exc, redis.exceptions.TimeoutError):
                    self._discard(budget, request_id)
                failures += 1
                await self._unreachable(queue, exc, failures)
                continue
            except redis.exceptions.RedisError as exc:
                raise TransportError(
                    f"the rate budget in Redis failed ({type(exc).__name__}: {exc}); "
                    "nothing was sent"
                ) from exc
            self._outage = None
            failures = 0
            low = grant.long_left < self._low_water
            self._low_until = time.monotonic() + self._short_span if low else 0.0
            self._long_left = grant.long_left
            queue.registered = more or not grant.granted
            if grant.granted:
                self._granted += 1
                return request_id, refused
            refused = queue.refused = True
            # The computed wait, and a little jitter so that processes waiting for
            # the same instant do not all ask at once.
            jitter = random.uniform(0.0, min(_JITTER, grant.wait / 10))  # noqa: S311 - not crypto
            defer = _DEFER if grant.defer else 0.0
            await asyncio.sleep(max(0.001, grant.wait) + jitter + defer)

    async def _unreachable(self, queue: WaitingLine, exc: Exception, failures: int) -> None:
        """Wait before the next attempt, or fail if Redis has been unreachable too long."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._outage is None:
            self._outage = now
        if now - self._outage >= self._unreachable_timeout:
            message = (
                f"the rate budget in Redis was unreachable for {now - self._outage:.1f}s "
                f"({type(exc).__name__}); nothing was sent"
            )
            queue.fail(message)  # those behind us wait for the same Redis
            raise TransportError(message) from exc
        if failures == 1:
            logger.warning(
                "the rate budget in Redis is unreachable (%s); nothing is sent meanwhile",
                type(exc).__name__,
            )
        await asyncio.sleep(backoff(failures))

    def _discard(self, budget: Budget, request_id: str) -> None:
        self._errands.run(functools.partial(budget.discard, request_id), "discard", _PATIENCE)

    # -- holding and giving back -------------------------------------------

    def _entered(self, slot: _RedisSlot) -> None:
        self._in_flight += 1
        self._schedule_renewal(slot)

    def _schedule_renewal(self, slot: _RedisSlot) -> None:
        loop = asyncio.get_running_loop()
        slot.renewal = loop.call_later(self._lease / 3, self._renew, slot)

    def _renew(self, slot: _RedisSlot) -> None:
        budget = self._budget
        assert budget is not None  # a slot was granted
        renew = functools.partial(budget.renew, slot.request_id)
        self._errands.run(renew, "renew", self._lease / 3)
        self._schedule_renewal(slot)

    def _exited(self, slot: _RedisSlot) -> None:
        # No await here: an exit that cannot be cancelled always records the finish.
        self._in_flight -= 1
        if slot.renewal is not None:
            slot.renewal.cancel()
        budget = self._budget
        assert budget is not None  # a slot was granted
        release = functools.partial(budget.release, slot.request_id)
        self._errands.run(release, "release", _PATIENCE)

    def _rate_limited(self, retry_after: float | None) -> None:
        self._rate_limited_count += 1
        budget = self._budget
        assert budget is not None  # a slot was granted

        async def penalize() -> None:
            pause = await budget.penalize(retry_after)
            logger.warning("429 from the server: every process pauses %.2fs", pause)

        task = self._errands.run(penalize, "429 report", _PATIENCE)
        self._penalties.add(task)
        task.add_done_callback(self._penalties.discard)
