"""Real redis-server processes for the tests that need Redis (never a mock of it).

Tests start their own ``redis-server`` on a free 127.0.0.1 port, without
persistence unless they ask for it (``extra_args``, e.g. :data:`AOF_ALWAYS`).
Where redis-server is not installed those tests skip, unless
``THANX_REQUIRE_REDIS=1`` (set by CI), which turns its absence into a failure.

Fixtures built on this live in ``tests/conftest.py``: ``redis_server`` (one
server for the session; tests keep apart by using their own keys) and
``own_redis_server`` (a private server a test may stop, kill and restart).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

__all__ = ["AOF_ALWAYS", "RedisServer", "free_port", "redis_server_binary"]

#: Persistence that loses nothing acknowledged: every write fsynced to the AOF
#: before its reply (the files live in the server's directory, so a restart reloads them).
AOF_ALWAYS = ("--appendonly", "yes", "--appendfsync", "always")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def redis_server_binary() -> str:
    """The redis-server executable; skips the test without one (fails it if CI requires one)."""
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("THANX_REQUIRE_REDIS") == "1":
            pytest.fail("THANX_REQUIRE_REDIS=1 but redis-server is not on PATH")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    return binary


def _answers_ping(port: int) -> bool:
    """Whether a Redis server answers PING on ``port`` (raw RESP: no client library needed)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` process on a fixed port, which a test may stop and start again.

    Args:
        directory: its working directory (nothing is persisted there, unless
            ``extra_args`` turn persistence on).
        port: the port; a free one by default. A restart keeps it.
        extra_args: more command-line options, after (so overriding) the
            defaults, e.g. :data:`AOF_ALWAYS`.
    """

    def __init__(
        self, directory: Path, port: int | None = None, extra_args: Sequence[str] = ()
    ) -> None:
        self.binary = redis_server_binary()
        self.directory = directory
        self.port = port or free_port()
        self.extra_args = list(extra_args)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 20.0) -> None:
        """Start the server and wait until it answers PING."""
        if self.running:
            raise RuntimeError("redis-server is already running")
        args = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(self.directory),
            *self.extra_args,
        ]  # fmt: skip
        self._process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.directory
        )
        deadline = time.monotonic() + timeout
        while not _answers_ping(self.port):
            if self._process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self._process.returncode}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"redis-server did not answer on port {self.port}")
            time.sleep(0.01)

    def stop(self) -> None:
        """Shut the server down (SIGTERM; without persistence, its data is gone)."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """Kill the server at once (SIGKILL), as a crash would."""
        self._end(signal.SIGKILL)

    def _end(self, how: signal.Signals) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(how)
            process.wait(10)

    def restart(self) -> None:
        """Stop and start again on the same port (empty, unless persistent)."""
        self.stop()
        self.start()
