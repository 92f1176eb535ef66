"""SIGKILL at any instant: after restarts, every identifier is issued exactly once.

A child process (tests/crash_child.py) submits 2,000 identifiers through a
journaled batcher to the emulator running here. The parent kills it with
SIGKILL the moment a chosen line appears in its output (plus a chosen delay),
then starts it again; each new child resubmits everything from the start, as a
consumer replaying its stream would. After a chain of kills, a last child runs
to the end. The emulator's ledger must show every known identifier issued
exactly once, and the last child must get an outcome for every submission.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from pathlib import Path

import attrs
import pytest

from thanx_async.testing import ThanxEmulator

CHILD = Path(__file__).with_name("crash_child.py")
COUNT = 2_000
UNKNOWN = sum(1 for i in range(COUNT) if i % 97 == 0)

pytestmark = pytest.mark.slow


@attrs.frozen
class Moment:
    """Kill when the n-th line containing ``marker`` appears, ``delay`` seconds later."""

    what: str
    marker: str
    n: int = 1
    delay: float = 0.0


# Each chain starts from an empty journal and emulator; its kills land in successive runs.
CHAINS: list[list[Moment]] = [
    [
        Moment("before any seal", "MARK submitted 100"),
        Moment("before seal, after recovery", "MARK submitted 0"),
        Moment("sealed, before POST", "sealed batch", 1),
        Moment("sealed, journal write racing", "sealed batch", 2, 0.002),
        Moment("POST in flight", "sealed batch", 1, 0.03),
        Moment("accepted, 'accepted' write racing", "accepted as job", 1),
        Moment("accepted and polling", "accepted as job", 2, 0.05),
        Moment("during resolution", "resolving", 1),
    ],
    [
        Moment("mid-admission", "MARK submitted 350"),
        Moment("second seal, before POST", "sealed batch", 2),
        Moment("POST in flight", "sealed batch", 3, 0.03),
        Moment("accepted and polling", "accepted as job", 1, 0.1),
        Moment("during resolution", "resolving", 2),
        Moment("right after a resolution", "resolving", 1, 0.005),
        Moment("late admission", "MARK submitted 900"),
        Moment("polling after restart", "accepted as job", 3, 0.02),
    ],
    [
        Moment("POST in flight (slow server)", "sealed batch", 1, 0.06),
        Moment("accepted, slow server", "accepted as job", 1, 0.01),
        Moment("sealed, slow server", "sealed batch", 2),
        Moment("resolution, slow server", "resolving", 1),
        Moment("accepted and polling, slow server", "accepted as job", 2, 0.2),
        Moment("mid-admission, slow server", "MARK submitted 500"),
        Moment("first line after restart", "MARK submitted 0", 1, 0.001),
        Moment("resolution again, slow server", "resolving", 3),
    ],
]


async def run_child(url: str, journal: Path, kill_at: Moment | None) -> tuple[bool, list[str]]:
    """Run one child; kill it at the moment given. Returns (killed, output lines)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(CHILD), url, str(journal), str(COUNT),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    lines: list[str] = []
    seen = 0
    killed = False
    async with asyncio.timeout(90):
        while line := (await proc.stdout.readline()).decode():
            lines.append(line.rstrip())
            if kill_at is not None and not killed and kill_at.marker in line:
                seen += 1
                if seen == kill_at.n:
                    if kill_at.delay:
                        await asyncio.sleep(kill_at.delay)
                    proc.kill()
                    killed = True
        await proc.wait()
    return killed, lines


async def run_chain(tmp_path: Path, chain: int) -> list[str]:
    """Kill a child at each moment of the chain, then finish; check the ledger. Returns kills."""
    journal = tmp_path / f"rewards-{chain}.db"
    async with ThanxEmulator(
        start_delay=0.2, speed=2_000.0, rate_limit_per_second=50, rate_limit_per_window=100_000
    ) as emu:
        if chain == 2:
            emu.state.faults.add("issue", delay=0.05, times=None)
        kills = []
        for moment in CHAINS[chain]:
            killed, lines = await run_child(emu.url, journal, moment)
            if killed:
                kills.append(moment.what)
            else:
                assert any(line.startswith("RESULT") for line in lines), "\n".join(lines[-20:])
        killed, lines = await run_child(emu.url, journal, None)
        assert not killed
        results = [line for line in lines if line.startswith("RESULT ")]
        assert results, "\n".join(lines[-30:])
        outcomes = json.loads(results[-1].removeprefix("RESULT "))
        counts = emu.state.issuance_counts()
    assert outcomes == {"issued": COUNT - UNKNOWN, "failed": UNKNOWN}, (chain, kills)
    per_person = Counter(counts.values())
    assert per_person == {1: COUNT - UNKNOWN}, (chain, kills, per_person)
    assert all(not key[4].startswith("unknown.") for key in counts)
    return [f"chain {chain}: {what}" for what in kills]


async def test_sigkill_at_any_moment_issues_exactly_once(tmp_path: Path) -> None:
    """After 20+ SIGKILLs at distinct moments, each known identifier is issued exactly once."""
    kills = []
    for chain in range(len(CHAINS)):
        kills += await run_chain(tmp_path, chain)
    assert len(set(kills)) >= 20, kills
