"""Hosts' clocks do not matter: processes whose clocks disagree by hours share one budget."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

from tests.redis_support import RedisServer
from tests.test_limiter_contract import SLACK, limit, optimal_span, violations

CHILD = Path(__file__).with_name("skew_child.py")
#: Clock offsets of the processes, in seconds: an hour fast, a day slow, a little off.
OFFSETS = [3600.0, -86_400.0, 0.37]
#: The children's budget (tests/redis/skew_child.py).
RATE = limit(per_second=3, second=0.2, per_window=12, window=1.0)


def test_processes_with_skewed_clocks_never_exceed_either_window(
    redis_server: RedisServer,
) -> None:
    """Three processes, clocks hours apart, flat out on one budget: no window overfilled."""
    client_id = f"skew-{uuid.uuid4()}"
    children = [
        subprocess.Popen(
            [sys.executable, str(CHILD), redis_server.url, client_id, str(offset), "10"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for offset in OFFSETS
    ]
    try:
        for child in children:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "READY", child.stderr
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        outputs = [child.communicate(timeout=60) for child in children]
    finally:
        for child in children:
            child.kill()
    stamps: list[float] = []
    for child, (out, err) in zip(children, outputs, strict=True):
        assert child.returncode == 0, err
        line = next(line for line in out.splitlines() if line.startswith("STAMPS "))
        stamps += json.loads(line.removeprefix("STAMPS "))
    assert len(stamps) == 30
    assert violations(stamps, RATE) == []
    assert max(stamps) - min(stamps) <= optimal_span(30, RATE) * 1.05 + SLACK
