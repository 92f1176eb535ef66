"""Group commit for RedisJournal: a loop turn's operations, one pipeline, each answered alone.

Every operation asked during one loop turn goes to Redis in one pipeline
(one round trip, see :class:`~._journal_link.Link`); each is one atomic
script and its future gets its own answer: a result, :class:`LeaseLostError`,
or a :class:`~thanx_async.JournalError` for it alone. Only a failure of the
whole group (Redis unreachable past the bound) fails every operation of it.
The decoders below turn script replies into what the journal protocol returns.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from thanx_async._errors import JournalError
from thanx_async._journal_format import Existing, Recorded
from thanx_async._journal_protocol import LeaseLostError
from thanx_async.redis._journal_codec import answers, text
from thanx_async.redis._journal_link import Arg, Link, Script

__all__ = ["GroupCommit", "admitted", "nothing", "sealed", "split"]

logger = logging.getLogger("thanx_async.journal")

T = TypeVar("T")


class _Op:
    __slots__ = ("args", "decode", "future", "script")

    def __init__(
        self,
        script: Script,
        args: Sequence[Arg],
        decode: Callable[[Any], Any],
        future: asyncio.Future[Any],
    ) -> None:
        self.script = script
        self.args = args
        self.decode = decode
        self.future = future


class GroupCommit:
    """The queue of one journal's writes and the task that sends them, a loop turn at a time."""

    def __init__(self, link: Link, name: str) -> None:
        self._link = link
        self._name = name
        self._ops: list[_Op] = []
        self._writer: asyncio.Task[None] | None = None

    def submit(
        self, script: Script, args: Sequence[Arg], decode: Callable[[Any], T]
    ) -> asyncio.Future[T]:
        """Queue one script call; its future resolves with ``decode(reply)``."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._ops.append(_Op(script, args, decode, future))
        if self._writer is None:
            self._writer = loop.create_task(
                self._write(), name=f"thanx_async journal {self._name} writer"
            )
        return future

    async def drain(self) -> None:
        """Wait until every queued write has been answered."""
        if self._writer is not None:
            await asyncio.shield(self._writer)

    async def _write(self) -> None:
        try:
            while self._ops:
                # Let the rest of this loop turn queue its operations first.
                await asyncio.sleep(0)
                ops, self._ops = self._ops, []
                try:
                    replies = await self._link.call([(op.script, op.args) for op in ops])
                except Exception as exc:  # noqa: BLE001 - the whole group failed: tell every waiter
                    error = exc if isinstance(exc, JournalError) else self._link.error(repr(exc))
                    for op in ops:
                        if not op.future.done():
                            op.future.set_exception(error)
                    continue
                for op, reply in zip(ops, replies, strict=True):
                    if not op.future.done():
                        self._settle(op, reply)
        finally:
            self._writer = None

    def _settle(self, op: _Op, reply: Any) -> None:
        what = op.script.name.lower()
        if isinstance(reply, Exception):
            logger.warning("journal %r: one write failed alone: %s", self._name, reply)
            op.future.set_exception(self._link.error(f"{what} failed ({reply})"))
            return
        try:
            result = op.decode(reply)
        except LeaseLostError as exc:
            op.future.set_exception(exc)
        except Exception as exc:  # noqa: BLE001 - an odd reply fails its operation, not the group
            op.future.set_exception(self._link.error(f"unreadable reply to {what}: {exc}"))
        else:
            op.future.set_result(result)


def admitted(reply: Any) -> list[int | Recorded | Existing]:
    """ADMIT's reply: per item its new id, Recorded or Existing."""
    out: list[int | Recorded | Existing] = []
    for answer in answers(reply):
        if not isinstance(answer, int | Recorded | Existing):
            raise JournalError("a recorded result expired while it was read; submit again")
        out.append(answer)
    return out


def _lost(encoded: str) -> LeaseLostError:
    return LeaseLostError([int(i) for i in encoded.split(",") if i])


def sealed(reply: Any) -> int:
    """SEAL's reply: the batch id, or LeaseLostError."""
    encoded = text(reply)
    if encoded[0] == "l":
        raise _lost(encoded[1:])
    return int(encoded[1:])


def split(reply: Any) -> list[int]:
    """SPLIT's reply: the new batch ids, or LeaseLostError."""
    encoded = text(reply)
    if encoded[0] == "l":
        raise _lost(encoded[1:])
    return [int(b) for b in encoded[1:].split(",") if b]


def nothing(reply: Any) -> None:
    """The reply of a write that returns nothing to its caller."""
    return
