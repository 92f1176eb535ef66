"""Helpers for tests that run the command line or the examples as real processes.

The emulator runs on its own event loop in a background thread, so a test can
block on a subprocess (``subprocess.run``) while the emulator keeps serving,
and can read the emulator's state (its ledger) once the process has ended.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from thanx_async.testing import (
    DEFAULT_CAMPAIGN_ID,
    DEFAULT_MERCHANT_ID,
    DEFAULT_VARIANT_ID,
    ThanxEmulator,
)

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
#: A credential the tests add to the emulator; asserted never to appear in any output.
SECRET_CLIENT_ID = "cli-test-client"
SECRET_TOKEN = "tok_live_CLI_SECRET_7f3a9c1e5b"
#: Options for an emulator whose jobs finish at once.
FAST: dict[str, Any] = {"start_delay": 0.0, "speed": 1_000_000.0}
PARTITION_ARGS = [
    "--merchant",
    DEFAULT_MERCHANT_ID,
    "--campaign",
    DEFAULT_CAMPAIGN_ID,
    "--variant",
    DEFAULT_VARIANT_ID,
]


class EmulatorThread:
    """A :class:`ThanxEmulator` serving from its own loop on a daemon thread."""

    def __init__(self, **options: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.emulator = ThanxEmulator(**options)
        self.emulator.state.add_credential(SECRET_CLIENT_ID, SECRET_TOKEN)

    @property
    def url(self) -> str:
        """The emulator's base URL."""
        return self.emulator.url

    def call(self, factory: Callable[[], Coroutine[Any, Any, T]], timeout: float = 30.0) -> T:
        """Run a coroutine on the emulator's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(factory(), self.loop).result(timeout)

    def start(self) -> None:
        """Start the thread and the emulator."""
        self._thread.start()
        self.call(self.emulator.start)

    def stop(self) -> None:
        """Stop the emulator, the loop and the thread."""
        try:
            self.call(self.emulator.stop)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()

    def env(self, **extra: str) -> dict[str, str]:
        """A process environment pointing the command line at this emulator."""
        return cli_env(
            THANX_BASE_URL=self.url,
            THANX_CLIENT_ID=SECRET_CLIENT_ID,
            THANX_ACCESS_TOKEN=SECRET_TOKEN,
            **extra,
        )

    def issued(self) -> dict[tuple[str, str], int]:
        """``(type, value)`` → times rewarded, over every campaign, as of now."""
        counts: dict[tuple[str, str], int] = {}
        for entry in self.emulator.state.ledger():
            key = (entry.identifier_type, entry.identifier_value)
            counts[key] = counts.get(key, 0) + 1
        return counts


@contextmanager
def emulator_thread(**options: Any) -> Iterator[EmulatorThread]:
    """A running :class:`EmulatorThread`, stopped afterwards."""
    running = EmulatorThread(**options)
    running.start()
    try:
        yield running
    finally:
        running.stop()


def cli_env(**values: str) -> dict[str, str]:
    """The current environment without any THANX_* variable, plus ``values``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("THANX_")}
    env.update(
        PYTHONUNBUFFERED="1",
        COLUMNS="160",
        NO_COLOR="1",
        PYTHONWARNINGS="error::ResourceWarning",
    )
    env.update(values)
    return env


def run_cli(
    args: list[str],
    env: Mapping[str, str],
    *,
    stdin: str | None = None,
    cwd: Path | None = None,
    timeout: float = 60.0,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m thanx_async ARGS`` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "thanx_async", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=dict(env),
        cwd=cwd,
        timeout=timeout,
        check=False,
    )


def start_cli(
    args: list[str], env: Mapping[str, str], *, cwd: Path | None = None
) -> subprocess.Popen[str]:
    """Start ``python -m thanx_async ARGS`` in the background (output captured)."""
    return subprocess.Popen(
        [sys.executable, "-m", "thanx_async", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=dict(env),
        cwd=cwd,
    )


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    """Poll ``predicate`` until true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.02)


def accepted_issues(emulator: EmulatorThread) -> int:
    """Issue requests the emulator accepted (202) so far."""
    return sum(1 for r in emulator.emulator.state.requests_for("issue") if r.status == 202)
