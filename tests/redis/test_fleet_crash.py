"""A fleet on one credential, budget and ledger: SIGKILL one process at any moment, lose nothing.

Three consumers (tests/redis/fleet_crash_child.py) share the emulator's
credential, a RedisRateLimiter and a RedisJournal on a real redis-server. One
of them is SIGKILLed the moment a chosen line appears in its output; the
events it had not acknowledged are redelivered to the survivors (as a
consumer group would), which also adopt its journaled work once its lease
expires. Whatever the moment, the emulator's ledger shows every identifier
issued exactly once, and every acknowledged identifier gets an outcome: from
its caller, or through ``on_outcome`` in the process that adopted it.
"""

from __future__ import annotations

import asyncio
import collections
import sys
from pathlib import Path

import attrs
import pytest

from tests.redis_support import AOF_ALWAYS, RedisServer
from thanx_async.testing import ThanxEmulator

CHILD = Path(__file__).with_name("fleet_crash_child.py")
PER_CHILD = 400
LEASE = 1.0

pytestmark = pytest.mark.slow


def known(i: int) -> bool:
    return i % 97 != 0


@attrs.frozen
class Moment:
    """Kill the victim when the n-th line containing ``marker`` appears, ``delay`` s later."""

    what: str
    marker: str
    n: int = 1
    delay: float = 0.0


MOMENTS = [
    Moment("before any admission", "MARK submitted 0"),
    Moment("mid-admission", "ACK 130"),
    Moment("sealed, before the seal is recorded", "sealed batch", 1),
    Moment("sealed, before POST", "sealed batch", 2, 0.002),
    Moment("POST in flight", "sealed batch", 1, 0.03),
    Moment("accepted, before 'accepted' is recorded", "accepted as job", 1),
    Moment("accepted and polling", "accepted as job", 2, 0.05),
    Moment("resolving (recording the result)", "resolving", 1),
    Moment("right after a result was recorded", "resolving", 1, 0.01),
    Moment("late admission", "MARK submitted 350"),
    Moment("second batch in flight", "sealed batch", 3, 0.02),
]


class Child:
    """One consumer process, its output collected line by line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.reader = asyncio.ensure_future(self._read())
        self.watch: tuple[Moment, asyncio.Future[None]] | None = None
        self._seen = 0

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := (await self.proc.stdout.readline()).decode():
            self.lines.append(line.rstrip())
            if self.watch is not None and self.watch[0].marker in line:
                self._seen += 1
                if self._seen == self.watch[0].n and not self.watch[1].done():
                    self.watch[1].set_result(None)

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")

    def numbers(self, tag: str) -> dict[int, str]:
        """``{i: status}`` from lines ``TAG i [status]``."""
        found = {}
        for line in self.lines:
            parts = line.split()
            if parts and parts[0] == tag:
                found[int(parts[1])] = parts[2] if len(parts) > 2 else ""
        return found


async def start(url: str, redis_url: str, name: str) -> Child:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(CHILD), url, redis_url, name, str(LEASE),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    return Child(proc)


def runs(numbers: list[int]) -> list[tuple[int, int]]:
    """Consecutive runs of sorted numbers as (start, end) ranges."""
    out: list[tuple[int, int]] = []
    for i in numbers:
        if out and out[-1][1] == i:
            out[-1] = (out[-1][0], i + 1)
        else:
            out.append((i, i + 1))
    return out


async def run_fleet(
    emu: ThanxEmulator, redis: RedisServer, name: str, moment: Moment | None
) -> tuple[list[Child], set[int]]:
    """Three consumers; kill the first at ``moment`` (or restart Redis mid-run if None)."""
    children = [await start(emu.url, redis.url, name) for _ in range(3)]
    victim, survivors = children[0], children[1:]
    killed: set[int] = set()
    hit: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    victim.watch = (moment or Moment("redis restart", "sealed batch", 2), hit)
    for n, child in enumerate(children):
        child.send(f"SUBMIT {n * PER_CHILD} {(n + 1) * PER_CHILD}")
    async with asyncio.timeout(60):
        await hit
        if moment is not None:
            if moment.delay:
                await asyncio.sleep(moment.delay)
            victim.proc.kill()
            await victim.proc.wait()
            await victim.reader
            acked = set(victim.numbers("ACK"))
            lost = [i for i in range(PER_CHILD) if i not in acked]
            killed = set(range(PER_CHILD))
            # The broker redelivers what the dead consumer never acknowledged.
            for k, (a, b) in enumerate(runs(lost)):
                survivors[k % 2].send(f"SUBMIT {a} {b}")
            await asyncio.sleep(2.5 * LEASE)  # long enough for its lease to expire
        else:
            redis.kill()
            await asyncio.sleep(0.3)
            redis.start()
        for child in children if moment is None else survivors:
            child.send("FINISH")
    async with asyncio.timeout(90):
        for child in children if moment is None else survivors:
            await child.proc.wait()
            await child.reader
    return children, killed


def check(emu: ThanxEmulator, children: list[Child], what: str) -> None:
    total = 3 * PER_CHILD
    counts = collections.Counter(e.identifier_value for e in emu.state.ledger())
    issued = {int(v.removeprefix("user").split("@")[0]) for v in counts}
    assert set(counts.values()) <= {1}, (what, [v for v, c in counts.items() if c > 1][:5])
    assert issued == {i for i in range(total) if known(i)}, (
        what,
        sorted(set(range(total)) - issued)[:10],
    )
    answered: dict[int, str] = {}
    for child in children:
        answered |= child.numbers("DONE")
        answered |= child.numbers("ADOPTED")
    acked = set().union(*(child.numbers("ACK") for child in children))
    unanswered = sorted(acked - set(answered))
    assert not unanswered, (what, unanswered[:10])
    for i, status in answered.items():
        assert status == ("issued" if known(i) else "failed"), (what, i, status)


async def test_sigkill_one_of_three_at_any_moment(tmp_path: Path) -> None:
    """At 11 moments, from admission to recording: exactly once, every acked identifier answered."""
    redis = RedisServer(tmp_path)
    redis.start()
    try:
        for n, moment in enumerate(MOMENTS):
            async with ThanxEmulator(
                start_delay=0.1, speed=5_000.0, rate_limit_per_second=50,
                rate_limit_per_window=100_000,
            ) as emu:  # fmt: skip
                emu.state.faults.add("issue", delay=0.02, times=None)
                children, _ = await run_fleet(emu, redis, f"crash{n}", moment)
                check(emu, children, moment.what)
    finally:
        redis.stop()


async def test_a_redis_restart_with_appendfsync_always_loses_nothing(tmp_path: Path) -> None:
    """Redis SIGKILLed and restarted mid-run (AOF always): exactly once, everyone answered."""
    redis = RedisServer(tmp_path, extra_args=AOF_ALWAYS)
    redis.start()
    try:
        async with ThanxEmulator(
            start_delay=0.1, speed=5_000.0, rate_limit_per_second=50, rate_limit_per_window=100_000
        ) as emu:
            children, _ = await run_fleet(emu, redis, "restart", None)
            check(emu, children, "redis restart")
    finally:
        redis.stop()
