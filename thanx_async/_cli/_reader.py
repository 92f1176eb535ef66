"""RowReader: reads input rows on a daemon thread and hands them to the event loop.

The input was checked in full before (``_source.scan``), so reading it again
is quick; a thread still keeps the event loop (progress, polls, Ctrl-C)
responsive while a large file is parsed.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager

from thanx_async._cli._input import BadRow, InputError, Row, read_rows

__all__ = ["RowReader"]

_Item = list[Row | BadRow] | BaseException | None
#: Opens the input: a context manager giving its text lines (``InputSource.lines``).
Opener = Callable[[], AbstractContextManager[Iterator[str]]]


class RowReader:
    """Reads rows on a daemon thread and hands them to the event loop in chunks.

    The thread stops at the end of input, on :meth:`stop`, or when the loop is
    gone.

    Args:
        opener: opens the input (``InputSource.lines``).
        column: forwarded to :func:`read_rows`.
        chunk: rows per hand-over.
        depth: chunks buffered ahead of the consumer.
    """

    def __init__(
        self,
        opener: Opener,
        *,
        column: str | None = None,
        chunk: int = 1000,
        depth: int = 4,
    ) -> None:
        self._opener = opener
        self._column = column
        self._chunk = chunk
        self._queue: queue.Queue[_Item] = queue.Queue(maxsize=depth)
        self._ready = asyncio.Event()
        self._stopped = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        #: The last line number read so far (for "stopped reading at line N").
        self.last_line = 0

    def start(self) -> None:
        """Start reading (inside the running loop)."""
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="thanx-async-reader", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to stop after its current row."""
        self._stopped.set()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread and wait for it: the input can then be read again."""
        self.stop()
        if self._thread is not None:
            self._thread.join(timeout)

    async def __aiter__(self) -> AsyncIterator[list[Row | BadRow]]:
        """Chunks of rows until the input ends (errors of the reading thread are raised here)."""
        if self._thread is None:
            self.start()
        while True:
            item = await self._get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            if item:
                self.last_line = item[-1].line
            yield item

    async def _get(self) -> _Item:
        while True:
            with contextlib.suppress(queue.Empty):
                return self._queue.get_nowait()
            self._ready.clear()
            # Re-check after clearing: a put between the two checks has its wakeup still to come.
            with contextlib.suppress(queue.Empty):
                return self._queue.get_nowait()
            await self._ready.wait()

    def _run(self) -> None:
        chunk: list[Row | BadRow] = []
        try:
            with self._opener() as lines:
                for row in read_rows(lines, column=self._column):
                    chunk.append(row)
                    if len(chunk) >= self._chunk:
                        if not self._put(chunk):
                            return
                        chunk = []
            if chunk and not self._put(chunk):
                return
            self._put(None)
        except (InputError, OSError, UnicodeDecodeError, csv.Error) as exc:
            # What was read before the problem is still good: hand it over first.
            if chunk and not self._put(chunk):
                return
            self._put(_as_input_error(exc))

    def _put(self, item: _Item) -> bool:
        """Hand one item over; False once stopped or when the loop is gone."""
        while not self._stopped.is_set():
            try:
                self._queue.put(item, timeout=0.1)
            except queue.Full:
                continue
            loop = self._loop
            if loop is None or loop.is_closed():
                return False
            try:
                loop.call_soon_threadsafe(self._ready.set)
            except RuntimeError:  # the loop closed between the check and the call
                return False
            return True
        return False


def _as_input_error(exc: Exception) -> InputError:
    if isinstance(exc, InputError):
        return exc
    if isinstance(exc, UnicodeDecodeError):
        return InputError(f"the input is not UTF-8 text ({exc.reason}); save it as UTF-8")
    return InputError(f"cannot read the input: {exc}")
