"""The ``--webhook-*`` options of the emulator's command lines.

Shared by ``python -m thanx_async.testing`` and ``thanx-async emulator``.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from thanx_async.testing._webhook_faults import WEBHOOK_EVENTS
from thanx_async.testing._webhooks import DEFAULT_WEBHOOK_SECRET, WebhookOutbox

__all__ = [
    "add_webhook_arguments",
    "webhook_argv",
    "webhook_banner",
    "webhook_options",
]


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"a probability is between 0 and 1, not {text}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"a delay is >= 0 seconds, not {text}")
    return value


def _events(text: str) -> tuple[str, ...]:
    events = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = sorted(set(events) - set(WEBHOOK_EVENTS))
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown webhook events {', '.join(unknown)} (known: {', '.join(WEBHOOK_EVENTS)})"
        )
    return events


def add_webhook_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``--webhook-*`` options to an emulator command line."""
    group = parser.add_argument_group("webhooks (signed deliveries when a job ends)")
    add = group.add_argument
    add("--webhook-url", metavar="URL", help="POST reward.issued and reward_batch.completed here")
    add(
        "--webhook-secret",
        metavar="SECRET",
        help="signing secret (default: $THANX_WEBHOOK_SECRET, else the emulator's default)",
    )
    add(
        "--webhook-events",
        type=_events,
        default=WEBHOOK_EVENTS,
        metavar="LIST",
        help="comma-separated events to send (default: both)",
    )
    add("--webhook-drop", type=_probability, default=0.0, metavar="P", help="chance to drop one")
    add("--webhook-duplicate", type=_probability, default=0.0, metavar="P",
        help="chance to send one twice")  # fmt: skip
    add("--webhook-bad-signature", type=_probability, default=0.0, metavar="P",
        help="chance to sign one with a wrong secret")  # fmt: skip
    add("--webhook-delay", type=_seconds, default=0.0, metavar="S",
        help="send every delivery (not dropped) S seconds late")  # fmt: skip


def webhook_options(args: argparse.Namespace) -> dict[str, Any]:
    """:class:`EmulatorState` keyword arguments from the parsed ``--webhook-*`` options.

    One fault applies per delivery (the first that wins its draw: drop, then
    duplicate, then bad signature); ``--webhook-delay`` applies to all but
    dropped ones.
    """
    delay = args.webhook_delay or None
    faults: list[dict[str, Any]] = []
    if args.webhook_drop > 0:
        faults.append({"drop": True, "probability": args.webhook_drop, "times": None})
    for name, chance in (
        ("duplicate", args.webhook_duplicate),
        ("bad_signature", args.webhook_bad_signature),
    ):
        if chance > 0:
            faults.append({name: True, "delay": delay, "probability": chance, "times": None})
    if delay is not None:
        faults.append({"delay": delay, "times": None})
    return {
        "webhook_url": args.webhook_url,
        "webhook_secret": args.webhook_secret
        or os.environ.get("THANX_WEBHOOK_SECRET")
        or DEFAULT_WEBHOOK_SECRET,
        "webhook_events": args.webhook_events,
        "webhook_faults": faults,
    }


def webhook_argv(args: argparse.Namespace) -> list[str]:
    """The ``--webhook-*`` options of ``args`` as command-line words (to forward them)."""
    argv = [
        f"--webhook-events={','.join(args.webhook_events)}",
        f"--webhook-drop={args.webhook_drop}",
        f"--webhook-duplicate={args.webhook_duplicate}",
        f"--webhook-bad-signature={args.webhook_bad_signature}",
        f"--webhook-delay={args.webhook_delay}",
    ]
    if args.webhook_url:
        argv.append(f"--webhook-url={args.webhook_url}")
    if args.webhook_secret:
        argv.append(f"--webhook-secret={args.webhook_secret}")
    return argv


def webhook_banner(outbox: WebhookOutbox) -> str:
    """The standalone command's line about webhooks (empty without a URL; never a real secret)."""
    if outbox.url is None:
        return ""
    secret = (
        f"the default secret {DEFAULT_WEBHOOK_SECRET!r}"
        if outbox.secret == DEFAULT_WEBHOOK_SECRET
        else "the configured secret"
    )
    return f"  webhooks: {', '.join(sorted(outbox.events))} to {outbox.url}, signed with {secret}\n"
