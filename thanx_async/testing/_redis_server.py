"""A real ``redis-server`` process on a free 127.0.0.1 port, for tests and benchmarks.

``RedisJournal``, ``RedisRateLimiter`` and ``WebhookRelay`` are tested
against this (never a mock of Redis); an application's own tests can do the
same::

    server = RedisServer(tmp_path)        # a free port, no persistence
    server.start()
    try:
        journal = RedisJournal(server.url, name="test")
        ...
    finally:
        server.stop()

It needs ``redis-server`` installed (``apt-get install redis-server``), and
nothing from redis-py: readiness is a raw ``PING``.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["AOF_ALWAYS", "RedisServer", "free_port"]

#: Persistence that loses nothing acknowledged: every write fsynced to the AOF
#: before its reply (the files live in the server's directory, so a restart reloads them).
AOF_ALWAYS = ("--appendonly", "yes", "--appendfsync", "always")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _find_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        raise FileNotFoundError("redis-server is not installed (apt-get install redis-server)")
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
        binary: the ``redis-server`` executable; found on ``PATH`` by default
            (:class:`FileNotFoundError` when it is not there).
    """

    def __init__(
        self,
        directory: Path,
        port: int | None = None,
        extra_args: Sequence[str] = (),
        *,
        binary: str | None = None,
    ) -> None:
        self.binary = binary or _find_binary()
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
        self._process = subprocess.Popen(  # noqa: S603 - our own argument list
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
