"""The durable journal: SQLite, one writer thread, group commit per loop turn.

What it records, in two tables:

* ``items``: one row per admitted (partition, identifier, dedupe key) with its
  submission order, the batch it was sealed into and its position there.
* ``batches``: one row per sealed batch with the exact body bytes and
  idempotency key, then the job id once accepted, then the final job JSON once
  the job is terminal. An identifier's recorded outcome is derived from its
  batch's final job and its position (no per-identifier update when 10,000
  finish at once).

Why stdlib ``sqlite3`` on a dedicated thread rather than aiosqlite: aiosqlite
also runs one thread per connection, but awaits every statement separately.
Group commit wants the opposite: everything the event loop asked for during
one turn goes to the thread in one hop and is committed in one transaction
(one fsync). A single-thread executor owning the connection does exactly that
with no dependency.

The file is opened with ``locking_mode=EXCLUSIVE``, so one process owns it at a
time; the lock dies with the process (even on SIGKILL).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from thanx_async._errors import JournalError
from thanx_async._journal_format import (
    SCHEMA,
    SCHEMA_VERSION,
    UNREPORTED,
    Existing,
    Recorded,
    Recovered,
    RecoveredBatch,
    RecoveredItem,
    SealRecord,
    dedupe_column,
    dedupe_value,
)

__all__ = [
    "Existing",
    "Journal",
    "Recorded",
    "Recovered",
    "RecoveredBatch",
    "RecoveredItem",
    "log_failed_write",
]

logger = logging.getLogger("thanx_async.journal")

T = TypeVar("T")
Synchronous = Literal["FULL", "NORMAL", "OFF"]


def log_failed_write(future: asyncio.Future[Any]) -> None:
    """Done-callback for a journal write nobody awaits: a failure is logged, not lost."""
    if not future.cancelled() and future.exception() is not None:
        logger.error("journal write failed: %s", future.exception())


class Journal:
    """A SQLite journal file for :class:`~thanx_async.RewardBatcher`.

    Args:
        path: the database file (created if missing). ``-wal`` and ``-shm``
            files appear beside it; deleting the journal forgets every recorded
            result (see the guarantees documentation).
        synchronous: ``"FULL"`` (default) survives power loss; ``"NORMAL"``
            survives a process crash but may lose the last commits on power
            loss, for higher throughput; ``"OFF"`` is for tests only.
        dedupe_window: seconds a finished result is kept and returned to
            resubmissions (normally set through ``RewardBatcher(dedupe_window=)``).

    Raises:
        JournalError: the file is corrupt, of an unknown schema version, or in
            use by another process (raised by :meth:`open`).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Synchronous = "FULL",
        dedupe_window: float = 86_400.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if synchronous not in ("FULL", "NORMAL", "OFF"):
            raise ValueError("synchronous must be 'FULL', 'NORMAL' or 'OFF'")
        self.path = Path(path)
        self.synchronous = synchronous
        self.dedupe_window = dedupe_window
        self._clock = clock
        self._conn: sqlite3.Connection | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._ops: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._last_prune = 0.0
        self._next_id = 1
        self._next_batch_id = 1
        self._saved_ids = (1, 1)
        self.commits = 0

    def __repr__(self) -> str:
        return f"Journal({str(self.path)!r}, synchronous={self.synchronous!r})"

    # -- lifecycle ------------------------------------------------------------

    async def open(self) -> Recovered:
        """Open (or create) the file, take ownership and read what is unfinished."""
        if self._executor is not None:
            raise RuntimeError(f"{self!r} is already open")
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="thanx_async-journal"
        )
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self._open_sync)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise

    def _error(self, what: str, exc: BaseException | None = None) -> JournalError:
        detail = f" ({exc})" if exc is not None else ""
        return JournalError(f"journal {str(self.path)!r}: {what}{detail}")

    def _open_sync(self) -> Recovered:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise self._error("cannot be opened", exc) from None
        try:
            conn.execute("PRAGMA busy_timeout = 200")
            conn.execute("PRAGMA locking_mode = EXCLUSIVE")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise self._error(f"cannot switch to WAL mode (got {mode!r})")
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            # Take the exclusive lock now, so a second process fails here, not later.
            conn.execute("BEGIN IMMEDIATE")
            self._check_schema(conn)
            conn.execute(UNREPORTED)
            conn.execute("COMMIT")
            recovered = self._recover(conn)
            # Row ids are ours to give (we own the file), so a group insert knows them all,
            # and never twice: a counter in meta outlives the deletion of the highest row
            # (which SQLite's own rowids would hand out again).
            self._next_id = self._counter(conn, "next_item_id", "items")
            self._next_batch_id = self._counter(conn, "next_batch_id", "batches")
            self._saved_ids = (self._next_id, self._next_batch_id)
        except JournalError:
            conn.close()
            raise
        except sqlite3.OperationalError as exc:
            conn.close()
            if "locked" in str(exc) or "busy" in str(exc):
                raise self._error("is in use by another process", exc) from None
            raise self._error("is not a usable journal", exc) from None
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise self._error("is corrupt or not a journal", exc) from None
        self._conn = conn
        return recovered

    @staticmethod
    def _counter(conn: sqlite3.Connection, key: str, table: str) -> int:
        """The next id to give in ``table``: past both its saved counter and its highest row."""
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        saved = int(row[0]) if row is not None and str(row[0]).isdigit() else 1
        top = conn.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchone()[0]  # noqa: S608
        return max(saved, int(top) + 1)

    def _save_counters(self, conn: sqlite3.Connection) -> None:
        counters = (self._next_id, self._next_batch_id)
        if counters != self._saved_ids:
            conn.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [("next_item_id", str(counters[0])), ("next_batch_id", str(counters[1]))],
            )
            self._saved_ids = counters

    def _check_schema(self, conn: sqlite3.Connection) -> None:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
            return
        if "meta" not in tables:
            raise self._error("is a SQLite file but not a thanx_async journal")
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None or row[0] != str(SCHEMA_VERSION):
            found = None if row is None else row[0]
            raise self._error(
                f"has schema version {found!r}; this release reads version {SCHEMA_VERSION}"
            )
        problem = conn.execute("PRAGMA quick_check").fetchone()[0]
        if problem != "ok":
            raise self._error(f"failed its integrity check: {problem}")

    def _recover(self, conn: sqlite3.Connection) -> Recovered:
        def item(row: Sequence[Any]) -> RecoveredItem:
            return RecoveredItem(
                row[0], (row[1], row[2], row[3]), row[4], row[5], dedupe_value(row[6])
            )

        columns = "id, merchant_id, campaign_id, variant_id, type, value, dedupe"
        unsealed = [
            item(r)
            for r in conn.execute(
                f"SELECT {columns} FROM items WHERE batch_id IS NULL ORDER BY id"  # noqa: S608 - constant
            )
        ]
        batches = []
        for row in conn.execute(
            "SELECT id, merchant_id, campaign_id, variant_id, idem_key, body, job_id, job_json"
            " FROM batches WHERE state != 'done'"
            " OR id IN (SELECT batch_id FROM unreported) ORDER BY id"
        ).fetchall():
            items = [
                item(r)
                for r in conn.execute(
                    f"SELECT {columns} FROM items WHERE batch_id = ? ORDER BY position",  # noqa: S608
                    (row[0],),
                )
            ]
            batches.append(
                RecoveredBatch(
                    row[0],
                    (row[1], row[2], row[3]),
                    row[4],
                    bytes(row[5]),
                    row[6],
                    items,
                    final=None if row[7] is None else bytes(row[7]),
                )
            )
        ratelog = [(r[0], r[1]) for r in conn.execute("SELECT start, finish FROM ratelog")]
        return Recovered(unsealed, batches, ratelog)

    async def aclose(self) -> None:
        """Commit what is queued and close the file."""
        if self._writer is not None:
            await asyncio.shield(self._writer)
        if self._conn is not None and self._executor is not None:
            conn = self._conn
            self._conn = None
            await asyncio.get_running_loop().run_in_executor(self._executor, conn.close)
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    # -- group commit ---------------------------------------------------------

    def _submit(self, op: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        if self._conn is None:
            raise RuntimeError(f"{self!r} is not open")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._ops.append((op, future))
        if self._writer is None:
            self._writer = loop.create_task(self._write(), name="thanx_async journal writer")
        return future

    async def _write(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._ops:
                # Let the rest of this loop turn queue its operations first.
                await asyncio.sleep(0)
                ops, self._ops = self._ops, []
                try:
                    results = await loop.run_in_executor(self._executor, self._apply, ops)
                except Exception as exc:  # noqa: BLE001 - the whole group failed: tell every waiter
                    error = (
                        exc if isinstance(exc, JournalError) else self._error("write failed", exc)
                    )
                    for _, future in ops:
                        if not future.done():
                            future.set_exception(error)
                    continue
                for (_, future), result in zip(ops, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, _Failed):
                        future.set_exception(result.error)
                    else:
                        future.set_result(result)
        finally:
            self._writer = None

    def _apply(self, ops: list[tuple[Callable[[sqlite3.Connection], Any], Any]]) -> list[Any]:
        """Run a group of operations in one transaction, each in its own savepoint.

        One operation that fails is rolled back alone and answered with its
        error; the others still commit. Only a failing commit (a full disk, an
        I/O error) fails the whole group, with SQLite's own error.
        """
        conn = self._conn
        assert conn is not None  # open() set it; aclose() drains the writer first
        conn.execute("BEGIN IMMEDIATE")
        try:
            results = [self._apply_one(conn, op) for op, _ in ops]
            now = self._clock()
            if now - self._last_prune > 60.0:
                self._last_prune = now
                self._prune(conn, now)
            self._save_counters(conn)
            conn.execute("COMMIT")
        except BaseException:
            # SQLite may have rolled back already (SQLITE_FULL does): rolling back
            # again would replace the real error with "no transaction is active".
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self.commits += 1
        return results

    def _apply_one(self, conn: sqlite3.Connection, op: Callable[[sqlite3.Connection], Any]) -> Any:
        conn.execute("SAVEPOINT op")
        try:
            result = op(conn)
        except Exception as exc:
            if not conn.in_transaction:  # SQLite ended the whole transaction: the group fails
                raise
            conn.execute("ROLLBACK TO op")
            conn.execute("RELEASE op")
            logger.warning("journal %s: one write failed alone: %s", self, exc)
            return _Failed(self._error("write failed", exc))
        conn.execute("RELEASE op")
        return result

    def _prune(self, conn: sqlite3.Connection, now: float) -> None:
        cutoff = now - self.dedupe_window
        old = [
            r[0]
            for r in conn.execute(
                "SELECT id FROM batches WHERE state = 'done' AND finished_at < ?"
                " AND id NOT IN (SELECT batch_id FROM unreported)",
                (cutoff,),
            )
        ]
        for batch_id in old:
            conn.execute("DELETE FROM items WHERE batch_id = ?", (batch_id,))
            conn.execute("DELETE FROM batches WHERE id = ?", (batch_id,))
        if old:
            logger.info(
                "journal: pruned %d finished batches older than the dedupe window", len(old)
            )

    # -- operations (each runs inside one group transaction) ------------------

    def admit_many(
        self, items: Sequence[tuple[tuple[str, str, str], str, str, str | None]]
    ) -> asyncio.Future[list[int | Recorded | Existing]]:
        """Record new items (partition, type, value, dedupe key) in one go.

        Resolves, per item, to its new row id, to a :class:`Recorded` result
        when it finished within the dedupe window, or to :class:`Existing` when
        it is journaled and still unfinished. The common case (all new) is one
        ``executemany``; any key conflict sends the group down the per-item path.
        """
        submitted_at = self._clock()

        def op(conn: sqlite3.Connection) -> list[int | Recorded | Existing]:
            # Rows are built here, in the writer thread, not on the caller's loop.
            rows = [(*p, value, dedupe_column(k), type_) for p, type_, value, k in items]
            first = self._next_id
            ids = range(first, first + len(rows))
            conn.execute("SAVEPOINT admit")
            try:
                conn.executemany(
                    "INSERT INTO items (id, merchant_id, campaign_id, variant_id, value, dedupe,"
                    " type, submitted_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [(i, *row, submitted_at) for i, row in zip(ids, rows, strict=True)],
                )
            except sqlite3.IntegrityError:  # someone is known already: one by one
                conn.execute("ROLLBACK TO admit")
                conn.execute("RELEASE admit")
                return [self._admit_one(conn, row, submitted_at) for row in rows]
            conn.execute("RELEASE admit")
            self._next_id = first + len(rows)
            return list(ids)

        return self._submit(op)

    def _admit_one(
        self, conn: sqlite3.Connection, row: tuple[str, ...], submitted_at: float
    ) -> int | Recorded | Existing:
        found = conn.execute(
            "SELECT i.id, i.position, b.id, b.state, b.job_json, b.size, b.finished_at"
            " FROM items i LEFT JOIN batches b ON b.id = i.batch_id"
            " WHERE i.merchant_id = ? AND i.campaign_id = ? AND i.variant_id = ?"
            " AND i.value = ? AND i.dedupe = ?",
            row[:5],
        ).fetchone()
        if found is not None:
            item_id, position, batch_id, state, job_json, size, finished_at = found
            if state == "done" and finished_at >= submitted_at - self.dedupe_window:
                return Recorded(batch_id, bytes(job_json), position, size)
            if state != "done":
                return Existing(int(item_id))
            # Outside the window: forget it and issue again.
            conn.execute("DELETE FROM items WHERE id = ?", (item_id,))
        item_id = self._next_id
        self._next_id += 1
        conn.execute(
            "INSERT INTO items (id, merchant_id, campaign_id, variant_id, value, dedupe, type,"
            " submitted_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (item_id, *row, submitted_at),
        )
        return item_id

    def _insert_batch(
        self, conn: sqlite3.Connection, partition: tuple[str, str, str], batch: SealRecord
    ) -> int:
        key, body, item_ids = batch
        batch_id = self._next_batch_id
        self._next_batch_id += 1
        conn.execute(
            "INSERT INTO batches (id, merchant_id, campaign_id, variant_id, idem_key, body, size,"
            " state, sealed_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'sealed', ?)",
            (batch_id, *partition, key, body, len(item_ids), self._clock()),
        )
        runs = _consecutive_runs(item_ids)
        if len(runs) * 8 <= len(item_ids):
            # Admitted together, sealed together: row ids mostly come in runs, and
            # one ranged UPDATE per run is far cheaper than one per row (a
            # 10,000-row seal held the writer, and every admission behind it, ~30 ms).
            conn.executemany(
                "UPDATE items SET batch_id = ?, position = id - ? WHERE id BETWEEN ? AND ?",
                [(batch_id, first - position, first, last) for position, first, last in runs],
            )
        else:
            conn.executemany(
                "UPDATE items SET batch_id = ?, position = ? WHERE id = ?",
                [(batch_id, position, item_id) for position, item_id in enumerate(item_ids)],
            )
        return batch_id

    def seal(
        self, partition: tuple[str, str, str], key: str, body: bytes, item_ids: Sequence[int]
    ) -> asyncio.Future[int]:
        """Record a sealed batch (exact bytes and key) and the position of each item."""
        record = (key, body, list(item_ids))
        return self._submit(lambda conn: self._insert_batch(conn, partition, record))

    def split(
        self,
        batch_id: int,
        partition: tuple[str, str, str],
        parts: Sequence[SealRecord],
        *,
        dropped: Sequence[int] = (),
    ) -> asyncio.Future[list[int]]:
        """Replace a refused batch by new batches of its items, dropping ``dropped`` items.

        One transaction, so no item is ever in limbo (in no batch, or in a batch
        that no longer exists).
        """
        gone = [(i,) for i in dropped]

        def op(conn: sqlite3.Connection) -> list[int]:
            conn.execute("DELETE FROM batches WHERE id = ?", (batch_id,))
            conn.executemany("DELETE FROM items WHERE id = ?", gone)
            return [self._insert_batch(conn, partition, part) for part in parts]

        return self._submit(op)

    def accepted(self, batch_id: int, job_id: str) -> asyncio.Future[None]:
        """Record the job id a batch was accepted as."""

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE batches SET state = 'accepted', job_id = ? WHERE id = ?", (job_id, batch_id)
            )

        return self._submit(op)

    def finished(self, batch_id: int, job_json: bytes) -> asyncio.Future[None]:
        """Record a batch's terminal job: from now on it answers resubmissions."""
        finished_at = self._clock()

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE batches SET state = 'done', job_json = ?, finished_at = ? WHERE id = ?",
                (job_json, finished_at, batch_id),
            )
            conn.execute("INSERT OR IGNORE INTO unreported (batch_id) VALUES (?)", (batch_id,))

        return self._submit(op)

    def reported(self, batch_id: int) -> asyncio.Future[None]:
        """The batch's outcomes were handed on: a restart no longer reports them."""

        def op(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM unreported WHERE batch_id = ?", (batch_id,))

        return self._submit(op)

    def forget(
        self, item_ids: Iterable[int], *, batch_id: int | None = None
    ) -> asyncio.Future[None]:
        """Drop items that issued nothing (cancelled, rejected), and their batch if given."""
        ids = [(i,) for i in item_ids]

        def op(conn: sqlite3.Connection) -> None:
            conn.executemany("DELETE FROM items WHERE id = ?", ids)
            if batch_id is not None:
                conn.execute("DELETE FROM batches WHERE id = ?", (batch_id,))
                conn.execute("DELETE FROM unreported WHERE batch_id = ?", (batch_id,))

        return self._submit(op)

    def save_ratelog(self, entries: Sequence[tuple[float, float | None]]) -> asyncio.Future[None]:
        """Replace the saved rate-limiter log (wall-clock times)."""
        rows = list(entries)

        def op(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM ratelog")
            conn.executemany("INSERT INTO ratelog (start, finish) VALUES (?, ?)", rows)

        return self._submit(op)


class _Failed:
    """The answer of one operation that failed inside an otherwise committed group."""

    __slots__ = ("error",)

    def __init__(self, error: JournalError) -> None:
        self.error = error


def _consecutive_runs(ids: Sequence[int]) -> list[tuple[int, int, int]]:
    """(position of the first, first id, last id) of each run of consecutive ids, in order."""
    runs: list[tuple[int, int, int]] = []
    start = 0
    for position in range(1, len(ids) + 1):
        if position == len(ids) or ids[position] != ids[position - 1] + 1:
            runs.append((start, ids[start], ids[position - 1]))
            start = position
    return runs
