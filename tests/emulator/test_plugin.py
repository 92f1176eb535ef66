"""The pytest plugin, run the way a user runs it: a separate pytest process on user tests."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

INI = """\
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
filterwarnings = error
addopts = --strict-markers -p no:cacheprovider
"""

USER_TESTS = """
import aiohttp
import pytest

import thanx_async as ta
from thanx_async.testing import ThanxEmulator


async def test_emulator_fixture(thanx_emulator: ThanxEmulator) -> None:
    assert thanx_emulator.url.startswith("http://127.0.0.1:")
    async with aiohttp.ClientSession() as session:
        async with session.get(thanx_emulator.url + "/partner/scopes") as response:
            assert response.status == 401


@pytest.mark.thanx_emulator(speed=123.0, start_delay=0.0)
async def test_marker_sets_options(thanx_emulator: ThanxEmulator) -> None:
    assert (thanx_emulator.state.speed, thanx_emulator.state.start_delay) == (123.0, 0.0)


@pytest.mark.thanx_emulator(start_delay=0.0, speed=float("inf"))
async def test_client_fixture(thanx_client: ta.ThanxClient, thanx_emulator: ThanxEmulator) -> None:
    assert await thanx_client.get_scopes() == ["rewards.issue"]
    campaign = await thanx_client.get_campaign("camp_welcome")
    assert campaign.id == "camp_welcome"
    assert [r.route for r in thanx_emulator.state.requests] == ["scopes", "get_campaign"]
"""

INI_WITHOUT_ASYNCIO = """\
[pytest]
filterwarnings = error
addopts = --strict-markers -p no:cacheprovider -p no:asyncio
"""

SYNC_TESTS = """
def test_uses_fixture(thanx_emulator):
    pass


def test_plain():
    pass
"""


def _run_pytest(
    tmp_path: Path, ini: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "pytest.ini").write_text(ini)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )


def test_user_tests_pass_with_the_fixtures(tmp_path: Path) -> None:
    """Installing thanx-async gives any project the two fixtures and the marker."""
    (tmp_path / "test_user.py").write_text(textwrap.dedent(USER_TESTS))
    result = _run_pytest(tmp_path, INI)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout


def test_plugin_loads_without_pytest_asyncio(tmp_path: Path) -> None:
    """Without pytest-asyncio the plugin still loads; the fixtures fail with a clear message."""
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "test_sync.py").write_text(SYNC_TESTS)
    # A pytest_asyncio that cannot be imported shadows the real one, as if it were absent.
    fake = tmp_path / "shadow" / "pytest_asyncio"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('pytest-asyncio is not installed')\n")
    ini = INI_WITHOUT_ASYNCIO
    result = _run_pytest(tests, ini, env={"PYTHONPATH": str(fake.parent)})
    assert "need pytest-asyncio" in result.stdout, result.stdout + result.stderr
    assert "1 passed, 1 error" in result.stdout
