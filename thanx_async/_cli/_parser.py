"""The argument parser of ``thanx-async``: every command, option and help text."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from thanx_async._cli._common import EXIT_USAGE, redact
from thanx_async._cli._demo import DemoOptions
from thanx_async._version import __version__
from thanx_async.testing._webhook_options import add_webhook_arguments

__all__ = ["build_parser"]

_EPILOG = """\
credentials: --client-id/--access-token/--base-url, or THANX_CLIENT_ID, THANX_ACCESS_TOKEN
and THANX_BASE_URL (default: the Thanx sandbox). Prefer the environment for the token:
command lines are visible to other users of the machine.

exit status: 0 done, 1 something failed (see the summary or the report), 2 usage error or
missing credentials, 130 interrupted.
"""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors never show the access token."""

    def error(self, message: str) -> NoReturn:
        """Print usage and a redacted message, exit 2."""
        prefix = "unrecognized arguments: "
        if message.startswith(prefix):
            # A misspelt --access-token would echo the token: show option names only.
            words = message.removeprefix(prefix).split()
            message = prefix + " ".join(w if w.startswith("-") else "..." for w in words)
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {redact(message)}\n")


def _number(
    kind: Callable[[str], float], low: float, high: float = math.inf, *, above: bool = False
) -> Callable[[str], float]:
    """An argparse type: a number in [low, high] (or (low, high] with ``above``), else exit 2."""
    name = "an integer" if kind is int else "a number"
    bound = f"> {low:g}" if above else f">= {low:g}"
    if high != math.inf:
        bound = f"from {low:g} to {high:g}"

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {name} {bound}, got {text!r}") from None
        if not math.isfinite(value) or value < low or value > high or (above and value == low):
            raise argparse.ArgumentTypeError(f"must be {name} {bound}, got {text!r}")
        return value

    parse.__name__ = name  # argparse names the type in some messages
    return parse


_SECONDS = _number(float, 0.0)
_POSITIVE = _number(float, 0.0, above=True)
_COUNT = _number(int, 0)
_AT_LEAST_ONE = _number(int, 1)


def _credentials_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("credentials")
    group.add_argument("--client-id", metavar="ID", help="X-ClientId (or THANX_CLIENT_ID)")
    group.add_argument(
        "--access-token",
        metavar="TOKEN",
        help="bearer token (or THANX_ACCESS_TOKEN, preferred: not visible in `ps`)",
    )
    group.add_argument(
        "--base-url", metavar="URL", help="API base URL (or THANX_BASE_URL; default: sandbox)"
    )
    parent.add_argument(
        "-v", "--verbose", action="count", default=0, help="log more (-v info, -vv debug)"
    )
    return parent


def _json_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--json", action="store_true", help="print JSON on stdout, for scripts")
    return parent


def _add_issue(commands: argparse._SubParsersAction[_Parser], creds: _Parser) -> None:
    issue = commands.add_parser(
        "issue",
        parents=[creds],
        help="issue a reward to every identifier of a CSV file or list",
        description=(
            "Issue one campaign variant's reward to every identifier read from FILE (or stdin): "
            "a CSV with a column named email, phone or identifier (detected), or one "
            "identifier per line. The whole input is read and checked, and the merchant, "
            "campaign and variant with the API, before anything is sent (a pipe is copied to "
            "a temporary file first). Invalid lines are reported with their line numbers and "
            "skipped. Exit status 1 when any identifier was not issued, 2 when nothing was sent "
            "because of a usage error."
        ),
    )
    issue.add_argument("source", nargs="?", default="-", metavar="FILE", help="input, - = stdin")
    issue.add_argument("--merchant", required=True, metavar="ID", help="merchant_id")
    issue.add_argument("--campaign", required=True, metavar="ID", help="campaign_id")
    issue.add_argument("--variant", required=True, metavar="ID", help="variant_id")
    issue.add_argument(
        "--report",
        type=Path,
        metavar="PATH",
        help="write one row per input row to PATH (.csv or .jsonl; - for stdout, the summary "
        "then goes to stderr)",
    )
    issue.add_argument(
        "--report-format", choices=("csv", "jsonl"), help="report format (default: from suffix)"
    )
    issue.add_argument(
        "--journal",
        type=Path,
        metavar="PATH",
        help="SQLite journal making the run resumable: rerun the same command after Ctrl-C "
        "or a crash and it continues without issuing anyone twice",
    )
    issue.add_argument("--column", metavar="NAME", help="CSV column to read (default: detected)")
    issue.add_argument(
        "--batch-size",
        type=_number(int, 1, 10_000),
        default=10_000,
        metavar="N",
        help="identifiers per request, 1 to 10000 (default: %(default)s)",
    )
    issue.add_argument(
        "--max-wait",
        type=_SECONDS,
        default=5.0,
        metavar="S",
        help="seconds a partial batch waits for more rows (default: %(default)s)",
    )
    issue.add_argument(
        "--grace",
        type=_SECONDS,
        default=10.0,
        metavar="S",
        help="after Ctrl-C, seconds to wait for outstanding outcomes (default: %(default)s)",
    )
    issue.add_argument("--no-progress", action="store_true", help="no live progress")
    issue.add_argument(
        "-y",
        "--yes",
        action="store_true",
        help="issue even to a control variant or an ended campaign without asking",
    )


def _add_job(commands: argparse._SubParsersAction[_Parser], creds: _Parser, json: _Parser) -> None:
    job = commands.add_parser("job", help="look at, wait for or revoke an issuance job")
    actions = job.add_subparsers(dest="action", required=True, metavar="ACTION")
    helps = {
        "get": "show an issuance job",
        "wait": "poll a job until it is completed, failed or revoked (exit 1 if failed)",
        "revoke": "revoke the rewards of a completed or failed job",
    }
    for name, text in helps.items():
        action = actions.add_parser(name, parents=[creds, json], help=text, description=text)
        action.add_argument("job_id", metavar="JOB_ID")
        action.add_argument("--merchant", required=True, metavar="ID", help="merchant_id")
        if name == "wait":
            action.add_argument("--timeout", type=_POSITIVE, metavar="S", help="give up after S s")


def _add_emulator(commands: argparse._SubParsersAction[_Parser]) -> None:
    emulator = commands.add_parser(
        "emulator",
        help="run the Thanx API emulator in the foreground",
        description="Serve the Thanx partner API emulator on 127.0.0.1 until Ctrl-C.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = emulator.add_argument
    port = _number(int, 0, 65_535)
    add("--port", type=port, default=8400, metavar="N", help="port (0 picks a free one)")
    add("--host", default="127.0.0.1", metavar="ADDR", help="address to bind")
    add("--speed", type=_POSITIVE, default=20_000.0, metavar="N", help="identifiers/s per job")
    add("--start-delay", type=_SECONDS, default=0.2, metavar="S", help="seconds before jobs start")
    add("--per-second", type=_COUNT, default=5, metavar="N", help="requests per second (0: off)")
    add("--per-window", type=_COUNT, default=2000, metavar="N", help="requests per window (0: off)")
    add("--window", type=_POSITIVE, default=900.0, metavar="S", help="the long window, in seconds")
    add(
        "--timespec",
        choices=("seconds", "milliseconds", "microseconds"),
        default="seconds",
        help="precision of job timestamps (the API documents whole seconds)",
    )
    add_webhook_arguments(emulator)


def _add_demo(commands: argparse._SubParsersAction[_Parser]) -> None:
    d = DemoOptions()
    demo = commands.add_parser(
        "demo",
        help="issue 100,000 rewards against the built-in emulator, with live progress",
        description=(
            "Start the emulator in-process with Thanx's documented rate limits, stream "
            "events from many concurrent tasks through RewardBatcher and print a summary."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = demo.add_argument
    add("--count", type=_COUNT, default=d.count, metavar="N", help="events to stream")
    add("--producers", type=_AT_LEAST_ONE, default=d.producers, metavar="N", help="producers")
    add("--rate", type=_SECONDS, default=d.rate, metavar="N", help="events per second (0: unpaced)")
    add("--seed", type=int, default=d.seed, metavar="N", help="seed of the generated stream")
    add("--job-speed", type=_POSITIVE, default=d.job_speed, metavar="N", help="ids/s per job")
    add("--start-delay", type=_SECONDS, default=d.start_delay, metavar="S", help="job start delay")
    add("--max-wait", type=_SECONDS, default=d.max_wait, metavar="S", help="the batcher's max_wait")
    add("--grace", type=_SECONDS, default=d.grace, metavar="S", help="wait after Ctrl-C")
    add("--no-progress", action="store_true", help="no live progress")


def build_parser() -> argparse.ArgumentParser:
    """The whole command line."""
    parser = _Parser(
        prog="thanx-async",
        description="Issue Thanx rewards in batches: bulk files, jobs, campaigns, an emulator.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    creds = _Parser(add_help=False, parents=[_credentials_parent()])
    json = _Parser(add_help=False, parents=[_json_parent()])
    _add_issue(commands, creds)
    _add_job(commands, creds, json)
    campaigns = commands.add_parser("campaigns", help="list a merchant's campaigns")
    campaign_actions = campaigns.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = campaign_actions.add_parser(
        "list", parents=[creds, json], help="every campaign of a merchant, with its variants"
    )
    listing.add_argument("--merchant", required=True, metavar="ID", help="merchant_id")
    commands.add_parser("scopes", parents=[creds, json], help="the scopes of this credential")
    _add_emulator(commands)
    _add_demo(commands)
    return parser
