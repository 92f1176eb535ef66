"""ThanxEmulator's lifecycle, the standalone command and the public names."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import aiohttp
import pytest

from thanx_async.testing import (
    DEFAULT_ACCESS_TOKEN,
    DEFAULT_CLIENT_ID,
    EmulatorState,
    ThanxEmulator,
)
from thanx_async.testing._server import main


async def test_start_stop_and_url() -> None:
    """start() binds a free loopback port, url points at it, stop() closes it (twice is fine)."""
    emulator = ThanxEmulator(speed=1.0)
    with pytest.raises(RuntimeError):
        _ = emulator.url
    await emulator.start()
    try:
        assert emulator.url == f"http://127.0.0.1:{emulator.port}"
        assert emulator.port > 0
        assert emulator.state.speed == 1.0
        with pytest.raises(RuntimeError, match="already running"):
            await emulator.start()
        async with aiohttp.ClientSession() as session, session.get(emulator.url + "/") as response:
            assert response.status == 404
    finally:
        await emulator.stop()
        await emulator.stop()
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get(f"http://127.0.0.1:{emulator.port}/")


async def test_state_and_options_exclude_each_other() -> None:
    """Passing a state and state options together is a TypeError."""
    with pytest.raises(TypeError):
        ThanxEmulator(EmulatorState(), speed=1.0)


async def test_two_emulators_share_nothing() -> None:
    """Each emulator gets its own port and state."""
    async with ThanxEmulator() as first, ThanxEmulator() as second:
        assert first.port != second.port
        assert first.state is not second.state


async def test_shutdown_does_not_wait_on_a_long_delay() -> None:
    """Stopping with a request stuck in a scripted delay ends within the shutdown grace."""
    async with ThanxEmulator() as emulator, aiohttp.ClientSession() as session:
        emulator.state.faults.add("scopes", delay=30.0)
        request = asyncio.ensure_future(session.get(emulator.url + "/partner/scopes"))
        await asyncio.sleep(0.1)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await emulator.stop()
        assert loop.time() - started < 5.0
        with pytest.raises(aiohttp.ClientError):
            await request


def test_command_prints_url_and_credentials() -> None:
    """The standalone command serves on the given port and prints how to reach it."""
    with subprocess.Popen(
        [sys.executable, "-m", "thanx_async.testing", "--port", "0", "--speed", "5"],
        stdout=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            banner = [process.stdout.readline() for _ in range(3)]
        finally:
            process.terminate()
            process.wait(timeout=10)
    assert banner[0].startswith("Thanx API emulator listening on http://127.0.0.1:")
    assert DEFAULT_CLIENT_ID in banner[1]
    assert DEFAULT_ACCESS_TOKEN in banner[2]


def test_command_reports_an_unbindable_address(capsys: pytest.CaptureFixture[str]) -> None:
    """main() returns 1 with a message when the address cannot be bound."""
    assert main(["--host", "203.0.113.1", "--port", "1"]) == 1
    assert "cannot start the emulator" in capsys.readouterr().err
