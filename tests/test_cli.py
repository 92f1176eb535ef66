"""The ``thanx-async`` console script, run as a real process against the emulator."""

from __future__ import annotations

import csv
import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

import thanx_async as ta
from tests.cli.support import (
    FAST,
    PARTITION_ARGS,
    SECRET_CLIENT_ID,
    SECRET_TOKEN,
    EmulatorThread,
    accepted_issues,
    cli_env,
    emulator_thread,
    run_cli,
    start_cli,
    wait_until,
)
from thanx_async.testing import DEFAULT_MERCHANT_ID

PEOPLE = """\
name,Email,phone
Jane,jane@example.com,
Bob,,+14155551234
Bad,not-an-email,
Sam,unknown.sam@example.com,
Jane again,JANE@example.com,
Nobody,,
Raw phone,,4155551234
Ana,ana@example.com,+14155550199
"""


@pytest.fixture
def emulator() -> Iterator[EmulatorThread]:
    """An emulator with instant jobs, serving from a background thread."""
    with emulator_thread(**FAST) as running:
        yield running


def read_report(path: Path) -> dict[int, dict[str, str]]:
    with path.open(newline="") as file:
        return {int(row["line"]): row for row in csv.DictReader(file)}


def test_issue_from_csv_writes_a_report(emulator: EmulatorThread, tmp_path: Path) -> None:
    """A CSV is detected, invalid lines are reported by line number and skipped, exit 1."""
    source = tmp_path / "people.csv"
    source.write_text(PEOPLE)
    report = tmp_path / "report.csv"
    result = run_cli(
        ["issue", *PARTITION_ARGS, str(source), "--report", str(report)], emulator.env()
    )
    assert result.returncode == 1, result.stderr
    assert "line 4: 'not-an-email' skipped" in result.stderr
    assert "line 8: '4155551234' skipped" in result.stderr
    rows = read_report(report)
    statuses = {line: row["status"] for line, row in rows.items()}
    assert statuses == {
        2: "issued",
        3: "issued",
        4: "invalid",
        5: "failed",
        6: "duplicate",
        7: "invalid",
        8: "invalid",
        9: "issued",
    }
    assert rows[5]["error"] == "User not found"
    assert rows[6]["error"] == "same identifier as line 2"
    assert rows[2]["job_id"].startswith("job_")
    assert emulator.issued() == {
        ("email", "jane@example.com"): 1,
        ("phone", "+14155551234"): 1,
        ("email", "ana@example.com"): 1,
    }
    assert "Summary" in result.stdout
    assert "issued" in result.stdout


def test_issue_from_stdin_with_a_jsonl_report(emulator: EmulatorThread, tmp_path: Path) -> None:
    """One identifier per line on stdin, all issued: exit 0 and one JSON line per identifier."""
    report = tmp_path / "out.jsonl"
    lines = "a@example.com\n+14155550001\n\n# a comment\nb@example.com\n"
    result = run_cli(
        ["issue", *PARTITION_ARGS, "-", "--report", str(report)], emulator.env(), stdin=lines
    )
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in report.read_text().splitlines()]
    assert sorted((r["line"], r["type"], r["status"]) for r in records) == [
        (1, "email", "issued"),
        (2, "phone", "issued"),
        (5, "email", "issued"),
    ]
    assert len({r["job_id"] for r in records}) == 1


@pytest.mark.slow
def test_rerun_with_journal_after_a_kill_issues_everyone_once(tmp_path: Path) -> None:
    """SIGKILL mid-run, rerun the same command: every identifier issued exactly once."""
    source = tmp_path / "guests.txt"
    people = [f"guest.{i}@example.com" for i in range(600)]
    source.write_text("\n".join(people) + "\n")
    args = [
        "issue", *PARTITION_ARGS, str(source), "--journal", str(tmp_path / "run.db"),
        "--batch-size", "100", "--report", str(tmp_path / "report.csv"),
    ]  # fmt: skip
    # Slow jobs (0.5 s per 100) so that the kill lands with work in every stage.
    with emulator_thread(start_delay=0.1, speed=200.0) as emulator:
        process = start_cli(args, emulator.env())
        try:
            wait_until(lambda: accepted_issues(emulator) >= 2, what="two accepted batches")
        finally:
            process.send_signal(signal.SIGKILL)
            process.communicate(timeout=30)
        assert process.returncode == -signal.SIGKILL
        first_run = emulator.issued()
        assert len(first_run) < len(people)
        result = run_cli([*args, "--no-progress"], emulator.env(), timeout=120)
        assert result.returncode == 0, result.stderr
        # Let anything the killed run left in flight finish before reading the ledger.
        time.sleep(1.0)
        issued = emulator.issued()
    assert issued == {("email", p): 1 for p in people}
    rows = read_report(tmp_path / "report.csv")
    assert len(rows) == len(people)
    assert {row["status"] for row in rows.values()} == {"issued"}
    for journal_file in tmp_path.glob("run.db*"):
        assert SECRET_TOKEN.encode() not in journal_file.read_bytes()


@pytest.mark.slow
def test_ctrl_c_stops_reading_and_reports_unresolved(tmp_path: Path) -> None:
    """SIGINT: exit 130, the summary counts unresolved identifiers, the journal is named."""
    source = tmp_path / "guests.txt"
    source.write_text("\n".join(f"guest.{i}@example.com" for i in range(2000)) + "\n")
    journal = tmp_path / "run.db"
    args = [
        "issue", *PARTITION_ARGS, str(source), "--journal", str(journal),
        "--batch-size", "200", "--grace", "0.5",
    ]  # fmt: skip
    with emulator_thread(start_delay=0.2, speed=100.0) as emulator:
        process = start_cli(args, emulator.env())
        wait_until(lambda: accepted_issues(emulator) >= 1, what="an accepted batch")
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
        assert process.returncode == 130, err
        assert "Interrupted" in err
        assert f"The journal {journal} holds them" in err
        assert "unresolved" in out
        finished = run_cli([*args, "--no-progress"], emulator.env(), timeout=120)
        assert finished.returncode == 0, finished.stderr


def test_job_get_wait_and_revoke(emulator: EmulatorThread) -> None:
    """`job get` / `wait` / `revoke` print the job (JSON with --json); a second revoke exits 1."""

    async def make_job() -> ta.IssuanceJob:
        async with ta.ThanxClient(
            client_id=SECRET_CLIENT_ID, access_token=SECRET_TOKEN, base_url=emulator.url
        ) as client:
            return await client.issue_rewards(
                merchant_id=DEFAULT_MERCHANT_ID,
                campaign_id="camp_birthday",
                variant_id="var_birthday_dessert",
                identifiers=["jane@example.com", "unknown.x@example.com"],
            )

    job = emulator.call(make_job)
    merchant = ["--merchant", DEFAULT_MERCHANT_ID]
    waited = run_cli(["job", "wait", job.id, *merchant, "--json"], emulator.env())
    assert waited.returncode == 0, waited.stderr
    assert json.loads(waited.stdout)["state"] == "completed"
    shown = run_cli(["job", "get", job.id, *merchant], emulator.env())
    assert shown.returncode == 0, shown.stderr
    assert "completed" in shown.stdout
    assert "User not found" in shown.stdout
    revoked = run_cli(["job", "revoke", job.id, *merchant, "--json"], emulator.env())
    assert revoked.returncode == 0, revoked.stderr
    assert json.loads(revoked.stdout)["state"] in ("revoking", "revoked")
    again = run_cli(["job", "revoke", job.id, *merchant], emulator.env())
    assert again.returncode == 1
    assert f"cannot revoke job {job.id}" in again.stderr
    missing = run_cli(["job", "get", "job_nope", *merchant], emulator.env())
    assert missing.returncode == 1
    assert "not found (404)" in missing.stderr


def test_campaigns_and_scopes(emulator: EmulatorThread) -> None:
    """`campaigns list` and `scopes` answer in JSON for scripts and as tables for people."""
    listed = run_cli(
        ["campaigns", "list", "--merchant", DEFAULT_MERCHANT_ID, "--json"], emulator.env()
    )
    assert listed.returncode == 0, listed.stderr
    campaigns = json.loads(listed.stdout)
    assert [c["id"] for c in campaigns] == ["camp_welcome", "camp_birthday", "camp_winback"]
    table = run_cli(["campaigns", "list", "--merchant", DEFAULT_MERCHANT_ID], emulator.env())
    assert "var_birthday_dessert" in table.stdout
    scopes = run_cli(["scopes", "--json"], emulator.env())
    assert json.loads(scopes.stdout) == ["rewards.issue"]


def test_missing_credentials_is_a_clear_usage_error() -> None:
    """No THANX_* variables and no flags: exit 2 naming what is missing, no traceback."""
    result = run_cli(["scopes"], cli_env())
    assert result.returncode == 2
    assert "missing credentials" in result.stderr
    assert "THANX_CLIENT_ID" in result.stderr
    assert "THANX_ACCESS_TOKEN" in result.stderr
    assert "Traceback" not in result.stderr
    only_id = run_cli(["scopes"], cli_env(THANX_CLIENT_ID="x"))
    assert only_id.returncode == 2
    assert "THANX_ACCESS_TOKEN" in only_id.stderr
    assert "THANX_CLIENT_ID" not in only_id.stderr


def test_the_token_never_appears_in_output(emulator: EmulatorThread, tmp_path: Path) -> None:
    """Success, refusal, a bad flag and a verbose run: the token is in no output or report."""
    source = tmp_path / "people.csv"
    source.write_text(PEOPLE)
    report = tmp_path / "report.csv"
    wrong = cli_env(
        THANX_BASE_URL=emulator.url, THANX_CLIENT_ID=SECRET_CLIENT_ID,
        THANX_ACCESS_TOKEN=SECRET_TOKEN + "x",
    )  # fmt: skip
    flags = ["--client-id", SECRET_CLIENT_ID, "--base-url", emulator.url]
    runs = [
        run_cli(
            ["issue", *PARTITION_ARGS, str(source), "--report", str(report), "-vv"], emulator.env()
        ),
        run_cli(["scopes", "-vv"], wrong),
        run_cli(["scopes", *flags, "--access-token", SECRET_TOKEN, "--bogus"], cli_env()),
        run_cli(["scopes", *flags, "--acess-token", SECRET_TOKEN], cli_env()),
        run_cli(
            ["job", "get", "job_x", "--merchant", "m", *flags, f"--access-token={SECRET_TOKEN}"],
            cli_env(),
        ),
    ]
    assert [r.returncode for r in runs] == [1, 1, 2, 2, 1]
    for result in runs:
        assert SECRET_TOKEN not in result.stdout + result.stderr
    assert SECRET_TOKEN not in report.read_text()


def test_without_rich_the_cli_says_which_extra_to_install(tmp_path: Path) -> None:
    """Without rich, thanx-async exits 1 and names the 'cli' extra."""
    shadow = tmp_path / "shadow" / "rich"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('rich is not installed')\n")
    result = run_cli(["--help"], cli_env(PYTHONPATH=str(shadow.parent)))
    assert result.returncode == 1
    assert "pip install 'thanx-async[cli]'" in result.stderr


def test_demo_small_stream() -> None:
    """A small, unpaced demo streams, issues and checks the emulator's ledger."""
    result = run_cli(
        ["demo", "--count", "3000", "--rate", "0", "--job-speed", "100000", "--start-delay", "0"],
        cli_env(),
    )
    assert result.returncode == 0, result.stderr
    assert "nobody rewarded twice" in result.stdout
    assert "429s received" in result.stdout


@pytest.mark.slow
def test_demo_issues_100000_in_under_a_minute() -> None:
    """The README's demo: 100,000 events under the documented limits, no 429, < 60 s."""
    started = time.monotonic()
    result = run_cli(["demo"], cli_env(), timeout=180)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert "100,000" in result.stdout
    assert "nobody rewarded twice" in result.stdout
    assert re.search(r"429s received\s+0 *\n", result.stdout), result.stdout
    assert elapsed < 60, f"the demo took {elapsed:.1f} s"


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_emulator_command_serves_until_interrupted(stop: signal.Signals) -> None:
    """The emulator command serves the API, shows what it saw, and prints a summary when stopped."""
    with subprocess.Popen(
        [sys.executable, "-m", "thanx_async", "emulator", "--port", "0", "--start-delay", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env=cli_env(),
    ) as process:
        try:
            assert process.stdout is not None
            banner = [process.stdout.readline()]
            while not banner[-1].startswith("Press Ctrl+C"):
                banner.append(process.stdout.readline())
            url = banner[0].rsplit(" ", 1)[-1].strip()
            assert url.startswith("http://127.0.0.1:")
            assert f"  what it saw: {url}/_emulator/summary" in "".join(banner)
            env = cli_env(
                THANX_BASE_URL=url, THANX_CLIENT_ID="emulator-client",
                THANX_ACCESS_TOKEN="emulator-token",
            )  # fmt: skip
            scopes = run_cli(["scopes"], env)
            assert scopes.stdout.strip() == "rewards.issue"
            issued = run_cli(
                ["issue", *PARTITION_ARGS, "-", "--no-progress"], env, stdin="a@example.com\n"
            )
            assert issued.returncode == 0, issued.stderr
            with urllib.request.urlopen(f"{url}/_emulator/summary", timeout=10) as answer:
                seen = json.load(answer)
            assert seen["requests"]["by_route"]["scopes"] == {"200": 2}
            assert seen["rewards"]["issued"] == 1
        finally:
            process.send_signal(stop)
            out, _ = process.communicate(timeout=10)
    assert process.returncode == 0
    assert "Emulator summary:" in out
    assert "rewards issued         1  to 1 person" in out
    assert "nobody rewarded twice for the same campaign variant" in out
