"""Helpers for the RedisJournal tests: items, a process's death in-process, a cuttable link.

:class:`Proxy` forwards TCP between a journal and a real redis-server, and can
cut every connection (Redis unreachable for that journal alone, while other
journals still reach it) or swallow the next reply (Redis ran a command but
its answer was lost), so those moments happen exactly when a test says.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

from thanx_async._journal_protocol import AdmitItem, JournalBackend
from thanx_async.redis import RedisJournal

__all__ = ["JOB", "PART", "Proxy", "abandon", "admit_new", "item", "unique_name"]

PART = ("merchant-1", "campaign-1", "variant-1")
JOB = b'{"id":"job-1","state":"completed"}'


def item(value: str, dedupe: str | None = None) -> AdmitItem:
    return (PART, "email", value, dedupe)


def unique_name() -> str:
    """A journal name no other test uses (tests share one redis-server)."""
    return f"t-{uuid.uuid4().hex[:12]}"


async def admit_new(journal: JournalBackend, items: list[AdmitItem]) -> list[int]:
    """Admit keys expected to be new; their ids."""
    answers = await journal.admit_many(items)
    ids = [a for a in answers if isinstance(a, int)]
    assert len(ids) == len(items), answers
    return ids


async def abandon(journal: RedisJournal) -> None:
    """As if the journal's process died now: no heartbeat, no release, connections gone."""
    journal._state = "closed"
    await journal._lease.stop()
    await journal._watchers.close(journal._link.error("abandoned"))
    if journal._redis is not None:
        await journal._redis.aclose()


async def stop_heartbeat(journal: RedisJournal) -> None:
    """The process stays alive but stops renewing its lease (a long pause, a partition)."""
    assert journal._lease.task is not None
    await journal._lease.stop()


class Proxy:
    """A TCP proxy on 127.0.0.1 in front of a redis-server port."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._open = True
        self._swallow = False
        self.swallowed = asyncio.Event()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def aclose(self) -> None:
        """Stop listening, close every connection and wait until they are closed."""
        if self._server is not None:
            self._server.close()
        self.cut()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def cut(self) -> None:
        """Close every connection and refuse new ones until :meth:`restore`."""
        self._open = False
        for writer in list(self._links):
            writer.close()

    def restore(self) -> None:
        """Accept connections again."""
        self._open = True

    def swallow_next_reply(self) -> None:
        """Drop the next bytes Redis sends back, and that connection (the command ran)."""
        self.swallowed.clear()
        self._swallow = True

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        writers = [writer]
        try:
            if not self._open:
                return
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            writers.append(up_writer)
            self._links.update(writers)
            await asyncio.gather(
                self._pipe(reader, up_writer, replies=False),
                self._pipe(up_reader, writer, replies=True),
            )
        except (OSError, ConnectionError):
            pass
        finally:
            self._handlers.discard(task)
            for w in writers:
                self._links.discard(w)
                w.close()
            for w in writers:
                with contextlib.suppress(Exception):
                    await w.wait_closed()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, replies: bool
    ) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await reader.read(65536):
                if replies and self._swallow:
                    self._swallow = False
                    self.swallowed.set()
                    break
                writer.write(data)
                await writer.drain()
        writer.close()
