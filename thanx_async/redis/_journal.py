"""RedisJournal: the journal contract on Redis, shared by a fleet of processes.

The SQLite :class:`~thanx_async.Journal` is the reference for every rule; this
backend keeps them fleet-wide (DESIGN.md, "Shared ledger"). The data and the
scripts are described in :mod:`._journal_lua`; the process's side is here and
in :mod:`._journal_group` (group commit: a loop turn's operations in one
pipeline, each answered alone, once Redis acknowledged it), :mod:`._journal_lease`
(heartbeat, adoption) and :mod:`._journal_watch` (watching any process's items).

Ownership: the process holds a lease (expiry on Redis's clock) renewed every
``lease / 3`` seconds. Items it admitted and batches it sealed are its own.
When a lease expires, :meth:`RedisJournal.adopt` in any live process takes its
work over, atomically, so exactly one adopter gets it. A process whose lease
ran out while it was alive (a long pause, a partition from Redis) is fenced:
its seals and splits of work now adopted are refused with
:class:`LeaseLostError`, its forgets of it are ignored, and its ``accepted`` /
``finished`` / ``reported`` records are harmless (the same batch is the same
job, the first record of an end stands, and it reports only what it handed to
its own callers). Its next write or heartbeat takes a lease again, for new
work only.

A batch's end has two steps: ``finished`` (its items answer resubmissions)
then ``reported`` (its outcomes reached their callers or ``on_outcome``).
Between them the batch is still its owner's work: a process that dies there
leaves it to its adopter, with its final job, so no recorded outcome goes
unreported.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import secrets
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, TypeVar

try:
    import redis.asyncio
    import redis.exceptions
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
except ImportError as exc:  # pragma: no cover - the extra is installed wherever tests run
    raise ImportError("thanx_async.redis needs redis-py: pip install 'thanx-async[redis]'") from exc

from thanx_async._errors import JournalError
from thanx_async._journal_format import Existing, Recorded, Recovered, SealRecord
from thanx_async._journal_protocol import AdmitItem
from thanx_async.redis import _journal_group as group
from thanx_async.redis._journal_codec import (
    Answer,
    admit_args,
    answers,
    key_prefix,
    partition_arg,
    text,
)
from thanx_async.redis._journal_group import GroupCommit
from thanx_async.redis._journal_lease import Lease
from thanx_async.redis._journal_link import SCRIPTS, Arg, Link
from thanx_async.redis._journal_watch import Watchers

__all__ = ["RedisJournal"]

logger = logging.getLogger("thanx_async.journal")

T = TypeVar("T")

#: The socket timeouts of a connection the journal opens itself.
_SOCKET_TIMEOUT = 5.0
#: Item ids per CHECK script call (watching thousands stays a few short scripts).
_CHECK_SLICE = 1000
#: How long Redis keeps a reply (ms) for a retry of its call (at least).
_KEEP_REPLY = 60_000
_NAME = re.compile(r"[^\s{}]{1,200}")
_INSTANCE = re.compile(r"[^\s{}#]{1,200}")


class RedisJournal:
    """A journal in Redis, shared by every process of a fleet (a *shared ledger*).

    Give every process the same Redis and ``name``: then a (partition,
    identifier, dedupe key) is one issuance across all of them, a result is
    answered to resubmissions anywhere for ``dedupe_window``, and the work of
    a process that died is adopted by a live one (see the many-processes guide).

    Args:
        url_or_client: a Redis URL (``redis://``, ``rediss://``, ``unix://``),
            or a ``redis.asyncio.Redis`` to use (never closed by :meth:`aclose`).
        name: names the ledger; every process sharing it passes the same one
            (no braces or whitespace).
        dedupe_window: seconds a finished result answers resubmissions; then
            Redis expires it. Use the same in every process.
        lease: seconds without a heartbeat after which this process's work
            may be adopted by another (renewed every ``lease / 3``).
        instance: a stable identity (a StatefulSet pod name): a process
            restarted with it resumes its own work at once, and its earlier
            incarnation is fenced. Without one, a restarted process's work is
            adopted once its lease expires.
        unreachable_timeout: seconds an operation keeps trying to reach Redis
            before it fails with :class:`~thanx_async.JournalError`.

    Raises:
        ValueError: a malformed name, instance or URL, or a duration not > 0.
        TypeError: neither a URL nor a ``redis.asyncio.Redis``.

    Example::

        from thanx_async.redis import RedisJournal

        journal = RedisJournal("redis://redis.internal:6379/0", name="rewards")
        async with ta.RewardBatcher(client, journal=journal, on_outcome=record) as batcher:
            ...
    """

    def __init__(
        self,
        url_or_client: str | redis.asyncio.Redis,
        *,
        name: str,
        dedupe_window: float = 86_400.0,
        lease: float = 15.0,
        instance: str | None = None,
        unreachable_timeout: float = 5.0,
    ) -> None:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ValueError("name must be 1-200 characters without braces or whitespace")
        if instance is not None and not _INSTANCE.fullmatch(instance):
            raise ValueError("instance must be 1-200 characters without braces, '#' or whitespace")
        if not dedupe_window > 0 or not lease > 0 or not unreachable_timeout > 0:
            raise ValueError("dedupe_window, lease and unreachable_timeout must be > 0")
        self.name = name
        self.instance = instance
        self.dedupe_window = float(dedupe_window)
        self.lease = float(lease)
        self._url: str | None = None
        self._redis: redis.asyncio.Redis | None = None
        self._state: Literal["new", "open", "closed"] = "new"
        if isinstance(url_or_client, str):
            self._url = url_or_client
            self._connection()  # a malformed URL fails here, not at open()
        elif isinstance(url_or_client, redis.asyncio.Redis):
            self._redis = url_or_client
        else:
            raise TypeError(
                "RedisJournal takes a Redis URL or a redis.asyncio.Redis, "
                f"not {type(url_or_client).__name__}"
            )
        prefix = key_prefix(name)
        self._prefix = prefix
        self._link = Link(self._connection, prefix + "leases", name, unreachable_timeout)
        self._watchers = Watchers(
            self._check, lambda: self._connection().pubsub(), prefix + "events", name
        )
        self._group = GroupCommit(self._link, name)
        self._lease = Lease(
            self._link, self._head, self._opid, self._watchers, lease=lease, name=name
        )
        #: This process among the fleet (``instance#generation`` with an instance).
        self.token = secrets.token_hex(8)
        self._seq = itertools.count(1)
        # A reply is kept (ms) longer than any retry of its call can last.
        self._keep = max(_KEEP_REPLY, round(3_000 * unreachable_timeout))

    def __repr__(self) -> str:
        # The URL may hold a password: never shown.
        return f"RedisJournal({self.name!r}, instance={self.instance!r})"

    def _connection(self) -> redis.asyncio.Redis:
        if self._redis is None:
            if self._state == "closed":  # a late task must not open a client nobody closes
                raise RuntimeError(f"{self!r} is closed")
            assert self._url is not None  # for mypy: one of them is always set
            self._redis = redis.asyncio.Redis.from_url(
                self._url,
                socket_timeout=_SOCKET_TIMEOUT,
                socket_connect_timeout=_SOCKET_TIMEOUT,
                retry=Retry(NoBackoff(), 1),
            )
        return self._redis

    def _head(self, opid: str = "", keep: int | None = None) -> list[Arg]:
        """The arguments every script starts with (see ``_PROLOGUE`` in the scripts)."""
        keep = self._keep if keep is None else keep
        return [self._prefix, self.token, opid, str(round(self.lease * 1000)), str(keep)]

    def _opid(self) -> str:
        return f"{self.token}:{next(self._seq)}"

    # -- lifecycle ------------------------------------------------------------

    async def open(self) -> Recovered:
        """Take a lease and adopt what is due: this instance's earlier work, expired leases' work.

        Raises:
            JournalError: Redis is unreachable or refuses this client.
        """
        if self._state != "new":
            raise RuntimeError(f"{self!r} was opened already")
        try:
            await self._link.load(list(SCRIPTS.values()))
            self._watchers.start()
            try:
                async with asyncio.timeout(self._link.timeout):
                    await self._watchers.subscribed.wait()
            except TimeoutError:
                raise self._link.error("could not subscribe to its channel") from None
            args = [*self._head(), self.instance or ""]
            token, previous = await self._link.one(SCRIPTS["REGISTER"], args)
            self.token = text(token)
            self._state = "open"
            self._lease.start()
            return await self._lease.adopt(text(previous))
        except BaseException:
            await self._shutdown(release=self._state == "open")
            raise

    async def aclose(self) -> None:
        """Write what is queued, stop the heartbeat, release the lease, close the connection.

        The lease is released so that work still unfinished here (journaled
        but unresolved) can be adopted at once; with none, this process leaves
        no trace. A client passed in stays open.
        """
        await self._group.drain()
        await self._shutdown(release=self._state == "open")

    async def _shutdown(self, *, release: bool) -> None:
        self._state = "closed"
        await self._lease.stop()
        await self._watchers.close(self._link.error("closed while the item was watched"))
        if release:
            try:
                await self._link.one(SCRIPTS["RELEASE"], self._head())
            except JournalError as exc:
                logger.warning("%s; its work is adopted once its lease expires", exc)
        if self._url is not None and self._redis is not None:
            own, self._redis = self._redis, None
            await own.aclose()

    # -- adoption ----------------------------------------------------------------

    async def adopt(self) -> Recovered:
        """Take over the work of every process whose lease expired (exactly one adopter wins).

        Returns:
            What was adopted (now this process's): unsealed items to batch anew,
            sealed batches to re-POST with their recorded bytes and key,
            accepted ones (``job_id`` set) to follow, and finished ones whose
            outcomes were never reported (``final`` set: report them from it,
            then call :meth:`reported`).

        Raises:
            JournalError: Redis is unreachable. Work claimed before the failure
                is returned by the next call.
        """
        self._check_open()
        return await self._lease.adopt()

    # -- watching ---------------------------------------------------------------

    def watch(self, item_id: int) -> asyncio.Future[Recorded | None]:
        """Resolve when the item (of any process) ends: its :class:`Recorded` result, or None.

        None: it was forgotten (it issued nothing; a resubmission tries again),
        or its result already left the dedupe window. Resolves at once (after
        one round trip) if it already ended. If the journal closes first, the
        future raises :class:`~thanx_async.JournalError`.
        """
        self._check_open()
        return self._watchers.watch(int(item_id))

    async def _check(self, ids: list[int]) -> list[Answer]:
        calls = [
            (SCRIPTS["CHECK"], [*self._head(), *map(str, ids[i : i + _CHECK_SLICE])])
            for i in range(0, len(ids), _CHECK_SLICE)
        ]
        out: list[Answer] = []
        for reply in await self._link.call(calls):
            if isinstance(reply, Exception):
                raise self._link.error(f"a check failed ({reply})")
            out += answers(reply)
        return out

    # -- operations (group commit) ---------------------------------------------

    def admit_many(
        self, items: Sequence[AdmitItem]
    ) -> asyncio.Future[list[int | Recorded | Existing]]:
        """Record new items; per item its new id, :class:`Recorded` or :class:`Existing`.

        Atomic per item, fleet-wide: a key admitted and unfinished in any
        process answers :class:`Existing`; one finished within the dedupe
        window answers its :class:`Recorded` result.
        """
        try:
            args = admit_args(items)
        except (TypeError, ValueError) as exc:
            return self._failed(self._link.error(f"cannot record an item: {exc}"))
        window = str(round(self.dedupe_window * 1000))
        return self._submit("ADMIT", [window, *args], group.admitted, replayable=True)

    def seal(
        self, partition: tuple[str, str, str], key: str, body: bytes, item_ids: Sequence[int]
    ) -> asyncio.Future[int]:
        """Record a sealed batch (exact bytes and key) and each item's position; its id.

        The future raises :class:`LeaseLostError` (and nothing is written) when
        any item is no longer this process's: its lease expired and another
        process adopted it.
        """
        try:
            args: list[Arg] = [partition_arg(partition), key, body, *_ids(item_ids)]
        except (TypeError, ValueError) as exc:
            return self._failed(self._link.error(f"cannot record a batch: {exc}"))
        return self._submit("SEAL", args, group.sealed, replayable=True)

    def split(
        self,
        batch_id: int,
        partition: tuple[str, str, str],
        parts: Sequence[SealRecord],
        *,
        dropped: Sequence[int] = (),
    ) -> asyncio.Future[list[int]]:
        """Replace a refused batch by new batches of its items (ids in order), minus ``dropped``.

        Atomic. Raises :class:`LeaseLostError` (nothing written) when the batch
        is no longer this process's (adopted by another, which splits it itself).
        """
        try:
            gone = _ids(dropped)
            args: list[Arg] = [str(int(batch_id)), partition_arg(partition), str(len(gone)), *gone]
            for key, body, ids in parts:
                members = _ids(ids)
                args += [key, body, str(len(members)), *members]
        except (TypeError, ValueError) as exc:
            return self._failed(self._link.error(f"cannot record a split: {exc}"))
        return self._submit("SPLIT", args, group.split, replayable=True)

    def accepted(self, batch_id: int, job_id: str) -> asyncio.Future[None]:
        """Record the job a batch was accepted as (harmless from any process: same key, same job).

        A batch that finished or no longer exists is left alone.
        """
        return self._submit("ACCEPTED", [str(int(batch_id)), str(job_id)], group.nothing)

    def finished(self, batch_id: int, job_json: bytes) -> asyncio.Future[None]:
        """Record a batch's final job; its items answer resubmissions for the dedupe window.

        Also sets that expiry on its items and their keys, and tells every
        process watching one of them. The batch itself stays this process's
        work, *unreported*, until :meth:`reported`. The first record of a
        batch's end stands (a second one, from an adopter following the same
        job, is ignored).
        """
        window = str(round(self.dedupe_window * 1000))
        return self._submit("FINISHED", [str(int(batch_id)), job_json, window], group.nothing)

    def reported(self, batch_id: int) -> asyncio.Future[None]:
        """Record that a finished batch's outcomes were handed to its callers or ``on_outcome``.

        Until then the batch stays this process's (its item list kept, whatever
        the dedupe window), and whoever adopts this process's work gets it back
        with its ``final`` job to report. Now it is nobody's work: its item
        list goes and it expires a dedupe window after it finished (at once if
        that passed). Idempotent; a no-op for a batch not finished (or gone);
        harmless from any process (it reports what it handed over itself).
        """
        window = str(round(self.dedupe_window * 1000))
        return self._submit("REPORTED", [str(int(batch_id)), window], group.nothing)

    def forget(
        self, item_ids: Iterable[int], *, batch_id: int | None = None
    ) -> asyncio.Future[None]:
        """Drop items that issued nothing, and their batch if given.

        Only this process's own: items (or a batch) adopted by another process
        meanwhile are left to it.
        """
        args = ["" if batch_id is None else str(int(batch_id)), *_ids(item_ids)]
        return self._submit("FORGET", args, group.nothing)

    def _check_open(self) -> None:
        if self._state != "open":
            raise RuntimeError(f"{self!r} is not open")

    def _failed(self, error: JournalError) -> asyncio.Future[Any]:
        self._check_open()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_exception(error)
        return future

    def _submit(
        self,
        script: str,
        args: Sequence[Arg],
        decode: Callable[[Any], T],
        *,
        replayable: bool = False,
    ) -> asyncio.Future[T]:
        self._check_open()
        head = self._head(self._opid() if replayable else "")
        return self._group.submit(SCRIPTS[script], [*head, *args], decode)


def _ids(ids: Iterable[int]) -> list[str]:
    return [str(int(i)) for i in ids]
