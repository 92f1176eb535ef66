"""The command line run in-process (``run(argv)``), for the paths a user rarely sees."""

from __future__ import annotations

import io
import json
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.support import (
    FAST,
    PARTITION_ARGS,
    EmulatorThread,
    accepted_issues,
    emulator_thread,
    wait_until,
)
from thanx_async._cli import run
from thanx_async.testing import (
    DEFAULT_MERCHANT_ID,
    READONLY_ACCESS_TOKEN,
    READONLY_CLIENT_ID,
)


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatorThread]:
    """An emulator in a background thread, with the environment pointing at it."""
    with emulator_thread(**FAST) as running:
        for name, value in running.env().items():
            if name.startswith("THANX_"):
                monkeypatch.setenv(name, value)
        yield running


@pytest.fixture
def guests(tmp_path: Path) -> Path:
    """A small CSV of guests."""
    path = tmp_path / "guests.csv"
    path.write_text("email\na@example.com\nb@example.com\nunknown.c@example.com\n")
    return path


def test_issue_with_journal_and_report(
    emulator: EmulatorThread, guests: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A journaled run issues, reports and names the journal; a rerun issues nobody again."""
    args = ["issue", *PARTITION_ARGS, str(guests), "--journal", str(tmp_path / "j.db")]
    assert run([*args, "--report", str(tmp_path / "r.csv")]) == 1  # one unknown user
    out = capsys.readouterr().out
    assert "journal" in out
    assert "submitted" in out
    assert run([*args, "--report", str(tmp_path / "again.jsonl")]) == 1
    assert emulator.issued() == {("email", "a@example.com"): 1, ("email", "b@example.com"): 1}
    assert len((tmp_path / "again.jsonl").read_text().splitlines()) == 3


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["--campaign", "camp_nope", "--variant", "v"], 2, "campaign 'camp_nope' not found"),
        (["--campaign", "camp_welcome", "--variant", "v"], 2, "is not a variant of campaign"),
    ],
)
def test_issue_refuses_a_wrong_partition(  # noqa: PLR0917 - fixtures and parameters
    emulator: EmulatorThread,
    guests: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    status: int,
    message: str,
) -> None:
    """A campaign or variant that does not exist fails before anything is issued."""
    assert run(["issue", "--merchant", DEFAULT_MERCHANT_ID, *args, str(guests)]) == status
    assert message in capsys.readouterr().err
    assert emulator.emulator.state.requests_for("issue") == []


def test_issue_input_problems(
    emulator: EmulatorThread,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Missing files, headers without identifiers, bad bytes and a terminal stdin are explained."""
    assert run(["issue", *PARTITION_ARGS, str(tmp_path / "nope.csv")]) == 2
    assert "no such file" in capsys.readouterr().err
    headless = tmp_path / "headless.csv"
    headless.write_text("name,contact\nJane,jane@example.com\n")
    assert run(["issue", *PARTITION_ARGS, str(headless)]) == 2
    assert "--column" in capsys.readouterr().err
    broken = tmp_path / "broken.txt"
    broken.write_bytes(b"a@example.com\n" * 1500 + b"\xff\n")
    assert run(["issue", *PARTITION_ARGS, str(broken), "--no-progress"]) == 2
    err = capsys.readouterr().err.replace("\n", " ")
    assert "line 1501: not UTF-8" in err
    assert emulator.issued() == {}
    valid = tmp_path / "valid.txt"
    valid.write_text("a@example.com\n")
    assert run(["issue", *PARTITION_ARGS, str(valid), "--report", str(tmp_path)]) == 1
    assert "cannot write the report" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", _Terminal())
    assert run(["issue", *PARTITION_ARGS]) == 2
    assert "no input" in capsys.readouterr().err


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_many_invalid_lines_are_summarised(
    emulator: EmulatorThread, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Past twenty invalid lines the rest are counted, pointing at --report."""
    source = tmp_path / "bad.txt"
    source.write_text("".join(f"not-valid-{i}\n" for i in range(25)))
    assert run(["issue", *PARTITION_ARGS, str(source)]) == 1
    err = capsys.readouterr().err
    assert "line 20:" in err
    assert "line 21:" not in err
    assert "5 more invalid lines (use --report to list them all)" in err


def test_credential_without_issue_scope(
    emulator: EmulatorThread,
    guests: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A read-only credential is told it lacks rewards.issue before anything is sent."""
    monkeypatch.setenv("THANX_CLIENT_ID", READONLY_CLIENT_ID)
    monkeypatch.setenv("THANX_ACCESS_TOKEN", READONLY_ACCESS_TOKEN)
    assert run(["issue", *PARTITION_ARGS, str(guests)]) == 1
    assert "lacks the rewards.issue scope" in capsys.readouterr().err
    assert run(["campaigns", "list", "--merchant", DEFAULT_MERCHANT_ID]) == 1
    assert "permission denied (403)" in capsys.readouterr().err


def test_job_wait_outcomes(emulator: EmulatorThread, capsys: pytest.CaptureFixture[str]) -> None:
    """Job wait exits 1 for a failed job and for a timeout; an empty merchant has no campaigns."""
    state = emulator.emulator.state
    state.fail_next_jobs(1)

    async def issue() -> str:
        from thanx_async import ThanxClient

        async with ThanxClient.from_env(env=emulator.env()) as client:
            job = await client.issue_rewards(
                merchant_id=DEFAULT_MERCHANT_ID, campaign_id="camp_welcome",
                variant_id="var_welcome_treat", identifiers=["a@example.com"],
            )  # fmt: skip
            return job.id

    failed = emulator.call(issue)
    assert run(["job", "wait", failed, "--merchant", DEFAULT_MERCHANT_ID]) == 1
    assert "failed" in capsys.readouterr().out
    state.speed = 0.5  # the next job takes two seconds
    slow = emulator.call(issue)
    assert run(["job", "wait", slow, "--merchant", DEFAULT_MERCHANT_ID, "--timeout", "0.2"]) == 1
    captured = capsys.readouterr()
    assert "still" in captured.err
    assert slow in captured.out
    state.add_merchant("merchant_empty")
    assert run(["campaigns", "list", "--merchant", "merchant_empty"]) == 0
    assert "has no campaigns" in capsys.readouterr().err
    assert run(["scopes"]) == 0
    assert capsys.readouterr().out.strip() == "rewards.issue"


def test_demo_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    """The demo runs in-process too, and prints the emulator's verdict."""
    args = ["demo", "--count", "2000", "--rate", "20000", "--producers", "4"]
    assert run([*args, "--job-speed", "1000000", "--start-delay", "0", "--max-wait", "0.2"]) == 0
    captured = capsys.readouterr()
    assert "nobody rewarded twice" in captured.out
    assert "Streaming 2,000 events" in captured.err


def test_job_commands_in_json(emulator: EmulatorThread, capsys: pytest.CaptureFixture[str]) -> None:
    """Job get and revoke print the job as JSON; campaigns list --json lists them all."""

    async def issue() -> str:
        from thanx_async import ThanxClient

        async with ThanxClient.from_env(env=emulator.env()) as client:
            job = await client.issue_rewards(
                merchant_id=DEFAULT_MERCHANT_ID, campaign_id="camp_welcome",
                variant_id="var_welcome_treat", identifiers=["unknown.a@example.com"],
            )  # fmt: skip
            await client.wait_for_job(job.id, merchant_id=DEFAULT_MERCHANT_ID)
            return job.id

    job_id = emulator.call(issue)
    merchant = ["--merchant", DEFAULT_MERCHANT_ID]
    assert run(["job", "get", job_id, *merchant, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["summary"]["failure_count"] == 1
    assert run(["job", "get", job_id, *merchant]) == 0
    assert "User not found" in capsys.readouterr().out
    assert run(["job", "revoke", job_id, *merchant]) == 0
    assert "revoking" in capsys.readouterr().out
    assert run(["campaigns", "list", *merchant, "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 3
    assert run(["scopes", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == ["rewards.issue"]


def test_interrupt_in_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """SIGINT while jobs run: exit 130 and a warning that a rerun without a journal may double."""
    source = tmp_path / "guests.txt"
    source.write_text("".join(f"g{i}@example.com\n" for i in range(1000)))
    with emulator_thread(start_delay=0.0, speed=50.0) as emulator:

        def interrupt_once_accepted() -> None:
            wait_until(lambda: accepted_issues(emulator) >= 1, what="an accepted batch")
            os.kill(os.getpid(), signal.SIGINT)

        killer = threading.Thread(target=interrupt_once_accepted, daemon=True)
        killer.start()
        args = ["issue", *PARTITION_ARGS, str(source), "--grace", "0.2", "--batch-size", "500"]
        with pytest.MonkeyPatch.context() as patch:
            for name, value in emulator.env().items():
                patch.setenv(name, value)
            assert run(args) == 130
        killer.join(5)
    captured = capsys.readouterr()
    assert "Without --journal, running again may issue some of them twice" in captured.err
    assert "Stopping: no more lines are read" in captured.err
