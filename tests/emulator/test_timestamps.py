"""Job timestamps: whole seconds with a ``Z`` by default, as the API documents; finer on request."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from datetime import datetime

import aiohttp
import pytest

import thanx_async as ta
from tests.emulator.conftest import Api, identifiers
from thanx_async._cli import build_parser
from thanx_async.testing import (
    DEFAULT_ACCESS_TOKEN,
    DEFAULT_CAMPAIGN_ID,
    DEFAULT_CLIENT_ID,
    DEFAULT_MERCHANT_ID,
    DEFAULT_VARIANT_ID,
    EmulatorState,
    ManualClock,
    ThanxEmulator,
)
from thanx_async.testing._state import TIMESPECS

WHOLE_SECONDS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
MILLISECONDS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


async def test_stamps_are_whole_seconds_by_default(api: Api, clock: ManualClock) -> None:
    """created_at, started_at and completed_at look like 2025-06-15T10:30:00Z by default."""
    job_id = (await api.issue(identifiers(2))).job["id"]
    clock.advance(5.0)
    job = (await api.get_job(job_id)).job
    assert job["state"] == "completed"
    for name in ("created_at", "started_at", "completed_at"):
        assert WHOLE_SECONDS.match(job[name]), job[name]


def test_whole_seconds_are_truncated_never_rounded() -> None:
    """A whole-second stamp is the finer stamp with its fraction cut off, at any instant."""
    state = EmulatorState(clock=ManualClock())
    for step in range(2_000):
        at = 1000.0 + step * 0.0137
        state.timespec = "milliseconds"
        fine = state.iso(at)
        state.timespec = "seconds"
        assert state.iso(at) == fine[:19] + "Z", (at, fine)


def test_stamps_follow_the_clock_to_the_second() -> None:
    """Whole-second stamps of two instants differ by the whole seconds the clock crossed."""
    state = EmulatorState(clock=ManualClock())
    for step in range(500):
        start = 1000.0 + step * 0.01
        for length in (0.0, 0.25, 1.0, 4.6):
            first, second = (datetime.fromisoformat(state.iso(t)) for t in (start, start + length))
            crossed = (second - first).total_seconds()
            assert crossed in (int(length), int(length) + 1), (start, length, crossed)


async def test_milliseconds_on_request() -> None:
    """ThanxEmulator(timespec='milliseconds') serves 2025-06-15T10:30:00.123Z stamps."""
    clock = ManualClock()
    emulator = ThanxEmulator(clock=clock, timespec="milliseconds", start_delay=0.0, speed=1.0)
    async with emulator, aiohttp.ClientSession() as session:
        api = Api(session, emulator.url)
        created = (await api.issue(identifiers(2))).job
        clock.advance(5.0)
        job = (await api.get_job(created["id"])).job
    assert job["state"] == "completed"
    for name in ("created_at", "started_at", "completed_at"):
        assert MILLISECONDS.match(job[name]), job[name]
    assert created["created_at"] == job["created_at"]


def test_unknown_timespec_is_refused() -> None:
    """A timespec the emulator cannot honour is a ValueError naming the choices."""
    with pytest.raises(ValueError, match="seconds, milliseconds, microseconds"):
        EmulatorState(timespec="minutes")


@pytest.mark.thanx_emulator(timespec="milliseconds", start_delay=0.0, speed=float("inf"))
async def test_plugin_marker_takes_the_option(
    thanx_emulator: ThanxEmulator, thanx_client: ta.ThanxClient
) -> None:
    """@pytest.mark.thanx_emulator(timespec=...) reaches the fixture's emulator."""
    job = await thanx_client.issue_rewards(
        merchant_id=DEFAULT_MERCHANT_ID, campaign_id=DEFAULT_CAMPAIGN_ID,
        variant_id=DEFAULT_VARIANT_ID, identifiers=["jane@example.com"],
    )  # fmt: skip
    assert thanx_emulator.state.timespec == "milliseconds"
    assert MILLISECONDS.match(thanx_emulator.state.job_json(job.id)["created_at"])


def test_standalone_command_takes_the_option() -> None:
    """The standalone command (python -m thanx_async.testing) takes --timespec."""
    argv = [sys.executable, "-m", "thanx_async.testing", "--port=0", "--timespec=milliseconds"]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            url = process.stdout.readline().rsplit(" ", 1)[-1].strip()
            created = _issue_over_http(url)["created_at"]
        finally:
            process.terminate()
            process.wait(timeout=10)
    assert MILLISECONDS.match(created), created


def test_console_script_forwards_the_option(monkeypatch: pytest.MonkeyPatch) -> None:
    """thanx-async emulator --timespec passes the choice on to the standalone emulator."""
    from thanx_async import testing
    from thanx_async._cli import run

    seen: list[list[str]] = []

    def main(argv: list[str]) -> int:
        seen.append(argv)
        return 0

    monkeypatch.setattr(testing, "main", main)
    assert run(["emulator", "--port", "0", "--timespec", "microseconds"]) == 0
    assert "--timespec=microseconds" in seen[0]
    assert run(["emulator", "--port", "0"]) == 0
    assert "--timespec=seconds" in seen[1]


def test_console_script_offers_the_emulators_choices() -> None:
    """The console script accepts exactly the timespecs the emulator accepts."""
    parser = build_parser()
    for timespec in TIMESPECS:
        assert parser.parse_args(["emulator", f"--timespec={timespec}"]).timespec == timespec
    with pytest.raises(SystemExit):
        parser.parse_args(["emulator", "--timespec=minutes"])


def _issue_over_http(url: str) -> dict[str, str]:
    body = json.dumps({
        "merchant_id": DEFAULT_MERCHANT_ID, "campaign_id": DEFAULT_CAMPAIGN_ID,
        "variant_id": DEFAULT_VARIANT_ID,
        "identifiers": [{"type": "email", "value": "jane@example.com"}],
    }).encode()  # fmt: skip
    request = urllib.request.Request(
        url + "/partner/campaigns/issue",
        data=body,
        headers={
            "Authorization": f"Bearer {DEFAULT_ACCESS_TOKEN}",
            "X-ClientId": DEFAULT_CLIENT_ID,
            "Accept-Version": "v4.0",
            "Content-Type": "application/json",
        },
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        job: dict[str, str] = json.load(response)["issuance_job"]
    return job
