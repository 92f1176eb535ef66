"""The ``thanx-async`` command line (needs the ``cli`` extra, which brings rich).

Commands::

    thanx-async issue --merchant M --campaign C --variant V [FILE|-]
                      [--report R] [--journal J] [--yes]
    thanx-async job get|wait|revoke JOB_ID --merchant M [--json]
    thanx-async campaigns list --merchant M [--json]
    thanx-async scopes [--json]
    thanx-async emulator [--port 8400]
    thanx-async demo

Credentials come from ``--client-id`` / ``--access-token`` / ``--base-url`` or
``THANX_CLIENT_ID`` / ``THANX_ACCESS_TOKEN`` / ``THANX_BASE_URL``. Exit
statuses: 0 done, 1 something failed, 2 usage or missing credentials, 130
interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from thanx_async._cli._common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    CLIError,
    Consoles,
    configure_logging,
    describe_error,
    resolve_credentials,
    secrets_in_argv,
)
from thanx_async._cli._demo import DemoOptions, run_demo
from thanx_async._cli._issue import IssueOptions, run_issue
from thanx_async._cli._jobs import job_get, job_revoke, job_wait, list_campaigns, show_scopes
from thanx_async._cli._parser import build_parser
from thanx_async._errors import ThanxError

__all__ = ["build_parser", "run"]

_Command = Callable[[], Coroutine[Any, Any, int]]


def _command(args: argparse.Namespace, consoles: Consoles) -> _Command:
    """The coroutine function running the chosen command (credentials resolved first)."""
    if args.command == "demo":
        options = DemoOptions(
            count=args.count,
            producers=args.producers,
            rate=args.rate,
            seed=args.seed,
            job_speed=args.job_speed,
            start_delay=args.start_delay,
            max_wait=args.max_wait,
            grace=args.grace,
            progress=not args.no_progress,
        )
        return lambda: run_demo(options, consoles)
    creds = resolve_credentials(args.client_id, args.access_token, args.base_url)
    if args.command == "issue":
        issue = IssueOptions(
            source=args.source,
            merchant_id=args.merchant,
            campaign_id=args.campaign,
            variant_id=args.variant,
            report=args.report,
            report_format=args.report_format,
            journal=args.journal,
            column=args.column,
            batch_size=args.batch_size,
            max_wait=args.max_wait,
            grace=args.grace,
            progress=not args.no_progress,
            yes=args.yes,
        )
        return lambda: run_issue(issue, creds, consoles)
    as_json: bool = args.json
    commands: dict[tuple[str, str | None], _Command] = {
        ("scopes", None): lambda: show_scopes(creds, consoles, as_json=as_json),
        ("campaigns", "list"): lambda: list_campaigns(
            args.merchant, creds, consoles, as_json=as_json
        ),
        ("job", "get"): lambda: job_get(
            args.job_id, args.merchant, creds, consoles, as_json=as_json
        ),
        ("job", "wait"): lambda: job_wait(
            args.job_id, args.merchant, creds, consoles, as_json=as_json, timeout=args.timeout
        ),
        ("job", "revoke"): lambda: job_revoke(
            args.job_id, args.merchant, creds, consoles, as_json=as_json
        ),
    }
    action: str | None = getattr(args, "action", None)
    command: str = args.command
    return commands[command, action]


def _run_emulator(args: argparse.Namespace) -> int:
    from thanx_async.testing import main as emulator_main  # noqa: PLC0415 - only this command
    from thanx_async.testing._webhook_options import webhook_argv  # noqa: PLC0415

    return emulator_main(
        [
            f"--port={args.port}",
            f"--host={args.host}",
            f"--speed={args.speed}",
            f"--start-delay={args.start_delay}",
            f"--per-second={args.per_second}",
            f"--per-window={args.per_window}",
            f"--window={args.window}",
            f"--timespec={args.timespec}",
            *webhook_argv(args),
        ]
    )


def run(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    secrets_in_argv(arguments, os.environ)
    args = build_parser().parse_args(arguments)
    if args.command == "emulator":
        return _run_emulator(args)
    consoles = Consoles()
    restore_logging = configure_logging(consoles, getattr(args, "verbose", 0))
    base_url: str | None = None
    try:
        command = _command(args, consoles)
        base_url = getattr(args, "base_url", None) or os.environ.get("THANX_BASE_URL")
        return asyncio.run(command())
    except CLIError as exc:
        consoles.error(exc.message)
        return exc.status
    except ThanxError as exc:
        consoles.error(describe_error(exc, base_url))
        return EXIT_FAILED
    except (KeyboardInterrupt, asyncio.CancelledError):
        consoles.error("aborted")
        return EXIT_INTERRUPTED
    finally:
        restore_logging()
