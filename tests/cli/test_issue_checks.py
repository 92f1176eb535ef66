"""`thanx-async issue` as a new user meets it: nothing half-sent, clear refusals, full reports.

Every test runs the real console script (``python -m thanx_async``) against
an emulator serving from a background thread, and reads the emulator's own
log and ledger to check what was (not) sent.
"""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.support import (
    FAST,
    PARTITION_ARGS,
    EmulatorThread,
    accepted_issues,
    emulator_thread,
    run_cli,
    start_cli,
    wait_until,
)
from thanx_async.testing import DEFAULT_CAMPAIGN_ID, DEFAULT_MERCHANT_ID, OTHER_MERCHANT_ID


@pytest.fixture
def emulator() -> Iterator[EmulatorThread]:
    """An emulator with instant jobs, serving from a background thread."""
    with emulator_thread(**FAST) as running:
        yield running


def sent(emulator: EmulatorThread) -> int:
    """Issue requests the emulator received (whatever it answered)."""
    return len(emulator.emulator.state.requests_for("issue"))


def guests(path: Path, count: int, header: str = "email") -> list[str]:
    """Lines of a CSV of ``count`` distinct guests (header first)."""
    return [header, *(f"guest.{n}@example.com" for n in range(count))]


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def read_report(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def test_a_bad_byte_on_the_last_line_sends_nothing(
    emulator: EmulatorThread, tmp_path: Path
) -> None:
    """A Latin-1 byte on line 20,002: exit 2 naming that line, and not one request sent."""
    source = tmp_path / "guests.csv"
    body = "\n".join(guests(source, 20_000)) + "\n"
    source.write_bytes(body.encode() + "caf\xe9@example.com\n".encode("latin-1"))
    result = run_cli(["issue", *PARTITION_ARGS, str(source)], emulator.env())
    assert result.returncode == 2, result.stderr
    assert "line 20002: not UTF-8 text (byte 0xe9 at column 4)" in result.stderr
    assert "Nothing was sent" in result.stderr
    assert emulator.emulator.state.requests == []  # not even the pre-flight checks
    with source.open("rb") as stdin:
        from_pipe = subprocess.run(
            [sys.executable, "-m", "thanx_async", "issue", *PARTITION_ARGS, "-"],
            stdin=stdin, capture_output=True, text=True, env=emulator.env(), timeout=60,
            check=False,
        )  # fmt: skip
    assert from_pipe.returncode == 2, from_pipe.stderr
    assert "stdin: line 20002: not UTF-8" in from_pipe.stderr
    assert sent(emulator) == 0


def test_a_stray_quote_stops_before_sending(emulator: EmulatorThread, tmp_path: Path) -> None:
    """An unclosed quote on line 1,002 of 6,002: exit 2 naming line 1002, nothing sent."""
    lines = guests(tmp_path, 6_001)
    lines[1001] = '"stray@example.com'
    source = write_lines(tmp_path / "guests.csv", lines)
    result = run_cli(["issue", *PARTITION_ARGS, str(source)], emulator.env())
    assert result.returncode == 2, result.stderr
    assert "line 1002: a quoted field is never closed" in result.stderr
    assert "(line 6002)" in result.stderr
    assert emulator.emulator.state.requests == []
    # A second stray quote closes the first: the rows between would vanish into one field.
    named = ["name,email", *(f"G,{value}" for value in guests(tmp_path, 6_001)[1:])]
    named[1001] = 'Bob,"bob@example.com'
    named[2001] = 'Ann,ann@example.com"'
    closed_later = write_lines(tmp_path / "closed.csv", named)
    result = run_cli(["issue", *PARTITION_ARGS, str(closed_later)], emulator.env())
    assert result.returncode == 2, result.stderr
    assert "line 1002: the email field runs over lines 1002-2002" in result.stderr
    assert sent(emulator) == 0


def test_preflight_refuses_a_campaign_of_another_merchant(
    emulator: EmulatorThread, tmp_path: Path
) -> None:
    """A wrong --merchant (unknown, or not the campaign's) is one clear line, exit 2, no issue."""
    source = write_lines(tmp_path / "g.csv", guests(tmp_path, 3))
    partition = ["--campaign", DEFAULT_CAMPAIGN_ID, "--variant", "var_welcome_treat"]
    other = run_cli(
        ["issue", "--merchant", OTHER_MERCHANT_ID, *partition, str(source)], emulator.env()
    )
    assert other.returncode == 2, other.stderr
    assert (
        f"campaign 'camp_welcome' belongs to another merchant, not '{OTHER_MERCHANT_ID}'"
        in other.stderr.replace("\n", " ")
    )
    assert "camp_other_launch" in other.stderr  # the merchant's own campaigns are named
    unknown = run_cli(
        ["issue", "--merchant", "merchant_typo", *partition, str(source)], emulator.env()
    )
    assert unknown.returncode == 2, unknown.stderr
    assert "merchant 'merchant_typo' not found" in unknown.stderr
    for result in (other, unknown):
        assert "Traceback" not in result.stderr
        assert len([line for line in result.stderr.splitlines() if "error:" in line]) == 1
    assert sent(emulator) == 0


def test_control_variant_and_ended_campaign_need_a_yes(
    emulator: EmulatorThread, tmp_path: Path
) -> None:
    """Without a terminal, a control variant or an ended campaign needs --yes; with it, it runs."""
    emulator.emulator.state.add_campaign(
        DEFAULT_MERCHANT_ID, "camp_spring", variants=["var_spring"], end_at="2024-03-31T23:59:59Z"
    )
    source = write_lines(tmp_path / "g.csv", guests(tmp_path, 2))
    merchant = ["--merchant", DEFAULT_MERCHANT_ID]
    control = [*merchant, "--campaign", "camp_welcome", "--variant", "var_welcome_control"]
    ended = [*merchant, "--campaign", "camp_spring", "--variant", "var_spring"]
    for args, warning in (
        (control, "'var_welcome_control' is the control variant of campaign 'camp_welcome'"),
        (ended, "campaign 'camp_spring' ended on 2024-03-31 23:59 UTC"),
    ):
        refused = run_cli(["issue", *args, str(source)], emulator.env())
        assert refused.returncode == 2, refused.stderr
        assert warning in refused.stderr.replace("\n", " ")
        assert "pass --yes to issue anyway" in refused.stderr
        assert sent(emulator) == 0
    accepted = run_cli(["issue", *ended, str(source), "--yes", "--no-progress"], emulator.env())
    assert accepted.returncode == 0, accepted.stderr
    assert "campaign 'camp_spring' ended" in accepted.stderr  # warned all the same
    assert sent(emulator) == 1


@pytest.mark.parametrize(("answer", "status", "issues"), [(b"n\n", 2, 0), (b"y\n", 0, 1)])
def test_a_terminal_is_asked_before_a_control_variant(
    emulator: EmulatorThread, tmp_path: Path, answer: bytes, status: int, issues: int
) -> None:
    """On a terminal the command asks; only a "y" sends anything."""
    source = write_lines(tmp_path / "g.csv", guests(tmp_path, 2))
    args = ["--merchant", DEFAULT_MERCHANT_ID, "--campaign", "camp_welcome"]
    args += ["--variant", "var_welcome_control", str(source), "--no-progress"]
    controller, terminal = os.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "thanx_async", "issue", *args],
            stdin=terminal, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=emulator.env(),
        )  # fmt: skip
        os.write(controller, answer)
        _, err = process.communicate(timeout=60)
    finally:
        os.close(controller)
        os.close(terminal)
    assert process.returncode == status, err
    assert "Issue anyway? [y/N]" in err
    assert sent(emulator) == issues


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-wait", "-1"], "argument --max-wait: must be a number >= 0, got '-1'"),
        (["--grace", "-5"], "argument --grace: must be a number >= 0, got '-5'"),
        (["--batch-size", "0"], "argument --batch-size: must be an integer from 1 to 10000"),
        (["--batch-size", "many"], "argument --batch-size: must be an integer from 1 to 10000"),
    ],
)
def test_bad_numbers_are_usage_errors(
    emulator: EmulatorThread, tmp_path: Path, args: list[str], message: str
) -> None:
    """Negative waits and impossible batch sizes exit 2 with the option named, no traceback."""
    source = write_lines(tmp_path / "g.csv", guests(tmp_path, 1))
    result = run_cli(["issue", *PARTITION_ARGS, str(source), *args], emulator.env())
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["job", "wait", "job_x", "--merchant", "m", "--timeout", "-1"],
        ["emulator", "--port", "70000"],
        ["emulator", "--speed", "0"],
        ["demo", "--producers", "0"],
        ["demo", "--max-wait", "nan"],
    ],
)
def test_other_commands_check_their_numbers(args: list[str]) -> None:
    """Every numeric option is checked by the parser: exit 2, no traceback, nothing started."""
    result = run_cli(args, {**os.environ, "THANX_CLIENT_ID": "c", "THANX_ACCESS_TOKEN": "t"})
    assert result.returncode == 2, result.stderr
    assert "error: argument" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_directory_and_a_schemeless_url_are_usage_errors(
    emulator: EmulatorThread, tmp_path: Path
) -> None:
    """A directory as input and THANX_BASE_URL without http(s):// exit 2 at once."""
    result = run_cli(["issue", *PARTITION_ARGS, str(tmp_path)], emulator.env())
    assert result.returncode == 2
    assert f"{tmp_path} is a directory, not a file of identifiers" in result.stderr
    source = write_lines(tmp_path / "g.csv", guests(tmp_path, 1))
    host = emulator.url.removeprefix("http://")
    env = {**emulator.env(), "THANX_BASE_URL": host}
    bare = run_cli(["issue", *PARTITION_ARGS, str(source)], env)
    assert bare.returncode == 2, bare.stderr
    assert f"THANX_BASE_URL '{host}' is not an http(s) URL" in bare.stderr
    flag = run_cli(["scopes", "--base-url", "api.thanx.com"], emulator.env())
    assert flag.returncode == 2
    assert "--base-url 'api.thanx.com' is not an http(s) URL" in flag.stderr
    assert emulator.emulator.state.requests == []


def test_report_dash_goes_to_stdout(emulator: EmulatorThread, tmp_path: Path) -> None:
    """`--report -` writes the report on stdout (no file named -); the summary goes to stderr."""
    source = write_lines(tmp_path / "g.csv", ["email", "a@example.com", "unknown.b@example.com"])
    result = run_cli(
        ["issue", *PARTITION_ARGS, str(source), "--report", "-", "--no-progress"],
        emulator.env(), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert not (tmp_path / "-").exists()
    rows = list(csv.DictReader(result.stdout.splitlines()))
    assert {(r["line"], r["status"]) for r in rows} == {("2", "issued"), ("3", "failed")}
    assert "Summary" in result.stderr
    assert "report" in result.stderr
    as_json = run_cli(
        ["issue", *PARTITION_ARGS, str(source), "--report", "-", "--report-format", "jsonl"],
        emulator.env(),
    )
    assert [line[0] for line in as_json.stdout.splitlines()] == ["{", "{"]


def test_an_empty_input_says_so(emulator: EmulatorThread, tmp_path: Path) -> None:
    """An empty file, or a header alone, exits 0 saying there is nothing to issue."""
    for text in ("", "email\n\n"):
        source = tmp_path / "empty.csv"
        source.write_text(text)
        result = run_cli(["issue", *PARTITION_ARGS, str(source)], emulator.env())
        assert result.returncode == 0, result.stderr
        assert "empty.csv holds no identifiers: nothing to issue" in result.stderr
    assert emulator.emulator.state.requests == []


def test_failures_are_shown_without_a_report(emulator: EmulatorThread, tmp_path: Path) -> None:
    """With no --report the terminal gets the count and the first few not issued, with reasons."""
    people = ["email", "a@example.com"] + [f"unknown.{n}@example.com" for n in range(12)]
    source = write_lines(tmp_path / "g.csv", people)
    result = run_cli(["issue", *PARTITION_ARGS, str(source)], emulator.env())
    assert result.returncode == 1, result.stderr
    err = result.stderr
    assert "12 identifiers not issued (the first 10):" in err
    assert re.search(r"line \d+: unknown\.\d+@example\.com failed \(User not found\)", err)
    assert "--report PATH lists them all" in err
    # The plain progress line (stderr is not a terminal) knows the total.
    assert "rows 13/13 (100%)" in err
    assert "ETA" in err


@pytest.mark.slow
def test_after_ctrl_c_the_report_accounts_for_every_row(tmp_path: Path) -> None:
    """Ctrl-C while back-pressure holds the feed: one report row per input row, none twice."""
    count = 130_000  # more than max_pending (100,000): the feed waits for outcomes
    source = write_lines(tmp_path / "g.csv", guests(tmp_path, count))
    report = tmp_path / "report.csv"
    args = ["issue", *PARTITION_ARGS, str(source), "--report", str(report), "--grace", "0.2"]
    # Jobs never finish during the test, so the feed stops at 100,000 pending.
    with emulator_thread(start_delay=0.0, speed=10.0, rate_limit_per_second=None) as emulator:
        process = start_cli(args, emulator.env())
        wait_until(lambda: accepted_issues(emulator) >= 10, 60, "ten accepted batches")
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    rows = read_report(report)
    lines = Counter(int(row["line"]) for row in rows)
    assert set(lines) == set(range(2, count + 2))
    assert set(lines.values()) == {1}
    statuses = Counter(row["status"] for row in rows)
    assert statuses["unresolved"] == 100_000
    assert statuses["not_sent"] == count - 100_000
    assert "not sent" in out
    assert f"{count - 100_000:,} rows not sent" in err
