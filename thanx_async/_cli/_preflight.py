"""Checks ``thanx-async issue`` makes before sending anything: what the API would refuse.

A typo in ``--merchant``, ``--campaign`` or ``--variant`` would otherwise pass
unnoticed and fail every batch (404 or 400), one by one. So before the first
identifier is sent the command asks the API, in a few requests:

1. the credential's scopes: it needs ``rewards.issue``;
2. the merchant's campaigns (``GET /partner/campaigns?merchant_id=``): the
   campaign must be one of them (``GET /partner/campaigns/{id}`` names no
   merchant, so only the listing can tell a campaign of another merchant);
3. the variant must belong to the campaign.

Two things the API accepts but a user rarely means are warnings that need a
yes: a **control variant** (no reward template: nobody gets a reward) and a
campaign whose ``end_at`` has passed. On a terminal the command asks; when
nobody can answer (no terminal) it stops unless ``--yes`` was given.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from thanx_async._cli._common import EXIT_FAILED, EXIT_USAGE, CLIError
from thanx_async._client import ThanxClient
from thanx_async._errors import NotFoundError
from thanx_async._models import Campaign

__all__ = ["ISSUE_SCOPE", "confirm", "preflight"]

ISSUE_SCOPE = "rewards.issue"
#: Campaign ids named when the campaign is not among the merchant's.
_MAX_NAMED = 10


async def _merchant_campaigns(client: ThanxClient, merchant_id: str) -> list[Campaign]:
    try:
        return [c async for c in client.iter_campaigns(merchant_id=merchant_id)]
    except NotFoundError:
        raise CLIError(
            f"merchant {merchant_id!r} not found (check --merchant)", EXIT_USAGE
        ) from None


async def _not_the_merchants(client: ThanxClient, campaign_id: str, merchant_id: str) -> str:
    """Why ``campaign_id`` is not among the merchant's campaigns, in one line."""
    try:
        await client.get_campaign(campaign_id)
    except NotFoundError:
        return f"campaign {campaign_id!r} not found"
    return f"campaign {campaign_id!r} belongs to another merchant, not {merchant_id!r}"


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


async def preflight(
    client: ThanxClient,
    *,
    merchant_id: str,
    campaign_id: str,
    variant_id: str,
    now: datetime | None = None,
) -> list[str]:
    """Fail fast on what the API would refuse; return what it would accept but looks wrong.

    Returns:
        Warnings that need a confirmation (control variant, ended campaign).

    Raises:
        CLIError: what is wrong, in one line (exit 2, or 1 for a missing scope).
        ThanxError: the API could not be asked (401, unreachable, ...).
    """
    scopes = await client.get_scopes()
    if ISSUE_SCOPE not in scopes:
        has = ", ".join(scopes) or "none"
        raise CLIError(
            f"this credential lacks the {ISSUE_SCOPE} scope (it has: {has})", EXIT_FAILED
        )
    campaigns = await _merchant_campaigns(client, merchant_id)
    campaign = next((c for c in campaigns if c.id == campaign_id), None)
    if campaign is None:
        reason = await _not_the_merchants(client, campaign_id, merchant_id)
        ids = [c.id for c in campaigns]
        listed = ", ".join(ids[:_MAX_NAMED]) + (", ..." if len(ids) > _MAX_NAMED else "")
        raise CLIError(
            f"{reason}: the campaigns of merchant {merchant_id!r} are: {listed or 'none'} "
            "(thanx-async campaigns list --merchant ... shows them)",
            EXIT_USAGE,
        )
    variant = next((v for v in campaign.variants if v.id == variant_id), None)
    if variant is None:
        variants = [v.id for v in campaign.variants]
        raise CLIError(
            f"{variant_id!r} is not a variant of campaign {campaign_id!r} "
            f"(its variants: {', '.join(variants) or 'none'})",
            EXIT_USAGE,
        )
    warnings = []
    if variant.reward_template_id is None:
        warnings.append(
            f"{variant_id!r} is the control variant of campaign {campaign_id!r} (it has no "
            "reward template): the people issued to it get no reward"
        )
    now = now or datetime.now(UTC)
    end = campaign.end_at
    if end is not None:
        end = end if end.tzinfo is not None else end.replace(tzinfo=UTC)
        if end <= now:
            warnings.append(f"campaign {campaign_id!r} ended on {_when(end.astimezone(UTC))}")
    return warnings


def confirm(
    warnings: list[str],
    *,
    yes: bool,
    interactive: bool,
    ask: Callable[[str], str],
    warn: Callable[[str], None],
) -> None:
    """Show the warnings, then go on only with ``--yes`` or a "y" typed at the terminal.

    Raises:
        CLIError: no confirmation (exit 2).
    """
    if not warnings:
        return
    for warning in warnings:
        warn(warning)
    if yes:
        return
    if not interactive:
        raise CLIError(
            "nothing was sent: pass --yes to issue anyway (no terminal to ask on)", EXIT_USAGE
        )
    try:
        answer = ask("Issue anyway? [y/N] ")
    except EOFError:
        answer = ""
    if answer.strip().lower() not in ("y", "yes"):
        raise CLIError("nothing was sent: not confirmed", EXIT_USAGE)
