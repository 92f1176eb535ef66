"""``job get|wait|revoke``, ``campaigns list`` and ``scopes``: one request (or a poll loop) each.

Every command prints a readable table, or with ``--json`` the API object as
JSON on stdout (nothing else on stdout), for scripts.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import orjson
from rich import box
from rich.table import Table

from thanx_async._cli._common import EXIT_FAILED, EXIT_OK, CLIError, Consoles, Credentials
from thanx_async._errors import UnprocessableEntityError
from thanx_async._models import Campaign, IssuanceJob, JobState
from thanx_async._serde import converter

__all__ = ["job_get", "job_revoke", "job_wait", "list_campaigns", "show_scopes"]

#: Failures listed in the readable view of a job (``--json`` has them all).
MAX_FAILURES_SHOWN = 10


def emit_json(value: Any) -> None:
    """Write ``value`` as indented JSON on stdout."""
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")
    sys.stdout.flush()


def job_json(job: IssuanceJob) -> dict[str, Any]:
    """The job as a JSON-able dict (datetimes as ISO 8601, states as their raw value)."""
    data: dict[str, Any] = converter.unstructure(job)
    data["state"] = job.state.value
    for name in ("created_at", "started_at", "completed_at"):
        value = getattr(job, name)
        data[name] = None if value is None else value.isoformat()
    return data


def job_table(job: IssuanceJob) -> Table:
    """A readable view of a job and its first failures."""
    table = Table(title=f"Issuance job {job.id}", title_justify="left", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    rows: list[tuple[str, str]] = [
        ("state", job.state.value),
        ("campaign", job.campaign_id or "-"),
        ("variant", job.variant_id or "-"),
        ("progress", f"{job.progress_percent}%  ({job.processed_count:,} of {job.total_count:,})"),
        ("succeeded", f"{job.success_count:,}"),
        ("failed", f"{job.failure_count:,}"),
        ("created", str(job.created_at or "-")),
        ("started", str(job.started_at or "-")),
        ("completed", str(job.completed_at or "-")),
    ]
    if job.summary is not None and job.summary.failures:
        shown = job.summary.failures[:MAX_FAILURES_SHOWN]
        lines = [f"#{f.identifier_index} {f.identifier_type or ''}: {f.error}" for f in shown]
        if len(job.summary.failures) > len(shown):
            lines.append(f"... {len(job.summary.failures) - len(shown):,} more (use --json)")
        rows.append(("failures", "\n".join(lines)))
    for label, value in rows:
        table.add_row(label, value)
    return table


def _show_job(job: IssuanceJob, consoles: Consoles, *, as_json: bool) -> None:
    if as_json:
        emit_json(job_json(job))
    else:
        consoles.out.print(job_table(job))


async def job_get(
    job_id: str, merchant_id: str, credentials: Credentials, consoles: Consoles, *, as_json: bool
) -> int:
    """``job get``: fetch one job and show it."""
    async with credentials.client() as client:
        job = await client.get_issuance_job(job_id, merchant_id=merchant_id)
    _show_job(job, consoles, as_json=as_json)
    return EXIT_OK


async def job_wait(
    job_id: str,
    merchant_id: str,
    credentials: Credentials,
    consoles: Consoles,
    *,
    as_json: bool,
    timeout: float | None,
) -> int:
    """``job wait``: poll until completed, failed or revoked; exit 1 unless it completed.

    The interval starts at half a second and grows by half each poll up to ten
    seconds, on the client's rate budget (Thanx asks for no rapid polling).
    """
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    interval = 0.5
    async with credentials.client() as client:
        with consoles.err.status(f"waiting for job {job_id}") as status:
            while True:
                job = await client.get_issuance_job(job_id, merchant_id=merchant_id)
                status.update(f"job {job_id}: {job.state.value} {job.progress_percent}%")
                if job.is_terminal:
                    break
                if deadline is not None and loop.time() + interval > deadline:
                    _show_job(job, consoles, as_json=as_json)
                    raise CLIError(f"job {job_id} is still {job.state.value} after {timeout:g} s")
                await asyncio.sleep(interval)
                interval = min(10.0, interval * 1.5)
    _show_job(job, consoles, as_json=as_json)
    return EXIT_OK if job.state is not JobState.FAILED else EXIT_FAILED


async def job_revoke(
    job_id: str, merchant_id: str, credentials: Credentials, consoles: Consoles, *, as_json: bool
) -> int:
    """``job revoke``: revoke a completed or failed job's rewards."""
    async with credentials.client() as client:
        try:
            job = await client.revoke_issuance_job(job_id, merchant_id=merchant_id)
        except UnprocessableEntityError as exc:
            raise CLIError(
                f"cannot revoke job {job_id}: {exc.message} "
                "(only completed or failed jobs can be revoked)"
            ) from None
    _show_job(job, consoles, as_json=as_json)
    return EXIT_OK


def _campaign_json(campaign: Campaign) -> dict[str, Any]:
    data: dict[str, Any] = converter.unstructure(campaign)
    for name in ("start_at", "end_at", "redeemable_from", "redeemable_to"):
        value = getattr(campaign, name)
        data[name] = None if value is None else value.isoformat()
    return data


async def list_campaigns(
    merchant_id: str, credentials: Credentials, consoles: Consoles, *, as_json: bool
) -> int:
    """``campaigns list``: every campaign of a merchant with its variants."""
    async with credentials.client() as client:
        campaigns = [c async for c in client.iter_campaigns(merchant_id=merchant_id)]
    if as_json:
        emit_json([_campaign_json(c) for c in campaigns])
        return EXIT_OK
    table = Table(title=f"Campaigns of {merchant_id}", title_justify="left", box=box.SIMPLE)
    table.add_column("campaign", no_wrap=True)
    table.add_column("name", overflow="fold")
    table.add_column("ends", no_wrap=True)
    table.add_column("variant", no_wrap=True)
    table.add_column("variant name", overflow="fold")
    for c in campaigns:
        ends = c.end_at.date().isoformat() if c.end_at else "-"
        first = (c.id, c.name or "", ends)
        for index, v in enumerate(c.variants or (None,)):
            head = first if index == 0 else ("", "", "")
            if v is None:
                table.add_row(*head, "-", "")
                continue
            label = (v.name or "") + ("" if v.reward_template_id else " (control)")
            table.add_row(*head, v.id, label)
    consoles.out.print(table)
    if not campaigns:
        consoles.note(f"merchant {merchant_id} has no campaigns")
    return EXIT_OK


async def show_scopes(credentials: Credentials, consoles: Consoles, *, as_json: bool) -> int:
    """``scopes``: what this credential may do (``rewards.issue`` is needed to issue)."""
    async with credentials.client() as client:
        scopes = await client.get_scopes()
    if as_json:
        emit_json(scopes)
    else:
        for scope in scopes:
            consoles.out.print(scope, highlight=False)
    return EXIT_OK
