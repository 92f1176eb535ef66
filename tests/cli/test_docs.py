"""What the docs show a new user is what the code does: commands, outputs, install lines."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.cli.support import FAST, ROOT, cli_env, emulator_thread, run_cli
from thanx_async.testing._inspect import format_summary

DOCS = ROOT / "docs"
#: A fenced block preceded by ``<!-- guide-test: NAME -->``.
_MARKED = re.compile(r"<!-- guide-test: (\S+) -->\n```\w*\n(.*?)```", re.DOTALL)
_JOB = re.compile(r"job_[0-9a-f]+")


def marked_blocks(page: Path) -> dict[str, str]:
    """The page's blocks marked for tests, by name."""
    return dict(_MARKED.findall(page.read_text()))


def test_the_bulk_guide_example_prints_what_the_guide_shows(tmp_path: Path) -> None:
    """bulk-csv.md's example, run as written: the same warnings, the same report, then a rerun."""
    blocks = marked_blocks(DOCS / "guides" / "bulk-csv.md")
    (tmp_path / "guests.csv").write_text(blocks["guests.csv"])
    command = shlex.split(blocks["command"].replace("\\\n", " "))
    assert command[0] == "thanx-async"
    with emulator_thread(**FAST) as emulator:
        first = run_cli(command[1:], emulator.env(), cwd=tmp_path)
        assert first.returncode == 1, first.stderr
        for line in blocks["warnings"].splitlines():
            assert line in first.stderr
        report = (tmp_path / "outcomes.csv").read_text()
        assert _JOB.sub("job_X", report) == _JOB.sub("job_X", blocks["report"])
        sent = len(emulator.emulator.state.requests_for("issue"))
        again = run_cli(command[1:], emulator.env(), cwd=tmp_path)
        assert again.returncode == 1, again.stderr
        assert (tmp_path / "outcomes.csv").read_text() == report  # the same job id too
        assert len(emulator.emulator.state.requests_for("issue")) == sent  # nothing sent


def test_the_install_line_names_every_runtime_dependency() -> None:
    """getting-started.md's `pip install -e .` comment lists every dependency in pyproject."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = [re.split(r"[<>=!~\[; ]", spec, maxsplit=1)[0] for spec in project["dependencies"]]
    page = (DOCS / "getting-started.md").read_text()
    install = next(
        line for line in page.splitlines() if line.startswith(".venv/bin/pip install -e . ")
    )
    listed = install.partition("# the library:")[2]
    assert sorted(name.strip() for name in listed.split(",")) == sorted(names)


def test_the_emulator_banner_is_the_one_the_guide_shows() -> None:
    """getting-started.md shows the emulator's banner as it prints it (the port aside)."""
    page = (DOCS / "getting-started.md").read_text()
    shown = re.search(r"```text\n(Thanx API emulator listening.*?)```", page, re.DOTALL)
    assert shown is not None
    with subprocess.Popen(
        [sys.executable, "-m", "thanx_async", "emulator", "--port", "0"],
        stdout=subprocess.PIPE, text=True, env=cli_env(),
    ) as process:  # fmt: skip
        assert process.stdout is not None
        lines = [process.stdout.readline()]
        while not lines[-1].startswith("Press Ctrl+C"):
            lines.append(process.stdout.readline())
        process.terminate()
        process.communicate(timeout=10)
    printed = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:8400", "".join(lines))
    assert printed == shown.group(1)


def test_the_readme_says_which_tests_need_redis() -> None:
    """Next to its test command the README says Redis tests skip without redis-server."""
    readme = (ROOT / "README.md").read_text()
    command = ".venv/bin/python -m pytest\n```\n"
    after = readme[readme.index(command) + len(command) :].split("\n\n", 2)[0]
    assert "redis-server" in after
    assert "skipped" in after
    assert "THANX_REQUIRE_REDIS=1" in after


def test_the_emulator_summary_in_the_cli_docs_is_the_real_format(tmp_path: Path) -> None:
    """cli.md's emulator summary is what the emulator prints after one issue run."""
    page = (DOCS / "cli.md").read_text()
    shown = re.search(r"```text\n(Emulator summary:.*?)```", page, re.DOTALL)
    assert shown is not None
    source = tmp_path / "one.txt"
    source.write_text("jane@example.com\n")
    with emulator_thread(**FAST) as emulator:
        args = ["issue", "--merchant", "merchant_demo", "--campaign", "camp_welcome"]
        args += ["--variant", "var_welcome_treat", str(source), "--no-progress"]
        assert run_cli(args, emulator.env()).returncode == 0
        assert run_cli(["scopes"], emulator.env()).returncode == 0
        text = format_summary(emulator.emulator.state)  # the loop is idle: nothing runs
    assert text + "\n" == shown.group(1)
