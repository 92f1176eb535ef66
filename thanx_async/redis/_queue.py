"""This process's waiting line for budget: FIFO per class, only the head asks Redis.

Waiters of one class (foreground or background) line up in arrival order.
The one at the front, the head, asks Redis until it is granted or gives up,
then hands the turn to the next one still waiting. A waiter that gives up in
the middle of the line is only marked done and skipped later, so cancelling
costs O(1).
"""

from __future__ import annotations

import asyncio
from collections import deque

from thanx_async._errors import TransportError

__all__ = ["Waiter", "WaitingLine"]


class Waiter:
    """One request waiting for its turn to ask Redis."""

    __slots__ = ("done", "turn")

    def __init__(self, turn: asyncio.Future[None]) -> None:
        self.turn = turn  # resolved when this waiter is the head of its line
        self.done = False


class WaitingLine:
    """The waiters of one class, FIFO, and what the fleet knows of them.

    Attributes:
        background: the class (polls) or not (every other request).
        alive: waiters not done.
        refused: the head was refused and waits for budget.
        registered: this process is in the fleet's waiting set of the class.
    """

    __slots__ = ("alive", "background", "refused", "registered", "waiters")

    def __init__(self, background: bool) -> None:
        self.background = background
        self.waiters: deque[Waiter] = deque()
        self.alive = 0
        self.refused = False
        self.registered = False

    def join(self, loop: asyncio.AbstractEventLoop) -> Waiter:
        """A new waiter at the back; it has the turn at once if nobody is ahead."""
        waiter = Waiter(loop.create_future())
        self.waiters.append(waiter)
        self.alive += 1
        if self.waiters[0] is waiter:
            waiter.turn.set_result(None)
        return waiter

    def leave(self, waiter: Waiter) -> None:
        """``waiter`` is done (granted, failed or cancelled): the next one gets the turn."""
        waiter.done = True
        self.alive -= 1
        waiters = self.waiters
        while waiters and waiters[0].done:
            waiters.popleft()
        if waiters and not waiters[0].turn.done():
            waiters[0].turn.set_result(None)

    def fail(self, message: str) -> None:
        """Fail every waiter still waiting for its turn (Redis is down for all of them)."""
        for waiter in self.waiters:
            if not waiter.done and not waiter.turn.done():
                waiter.turn.set_exception(TransportError(message))
