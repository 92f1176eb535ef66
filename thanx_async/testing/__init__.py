"""Test helpers: a Thanx partner API emulator you can run in-process, in pytest or standalone.

The emulator is a real aiohttp server on 127.0.0.1 that behaves like the
Thanx API (headers, scopes, validation, idempotency cache, both rate-limit
windows, the job lifecycle, revoke, campaigns, scopes) and lets a test script
faults and inspect everything it received and issued.

Example:
    >>> import thanx_async as ta
    >>> from thanx_async.testing import (
    ...     DEFAULT_ACCESS_TOKEN, DEFAULT_CAMPAIGN_ID, DEFAULT_CLIENT_ID,
    ...     DEFAULT_MERCHANT_ID, DEFAULT_VARIANT_ID, ThanxEmulator)
    >>> async def demo() -> None:
    ...     async with ThanxEmulator(start_delay=0.0) as emu:
    ...         emu.state.faults.add("issue", drop="after")   # commit, then hang up
    ...         async with ta.ThanxClient(client_id=DEFAULT_CLIENT_ID,
    ...                                   access_token=DEFAULT_ACCESS_TOKEN,
    ...                                   base_url=emu.url) as client:
    ...             job = await client.issue_rewards(
    ...                 merchant_id=DEFAULT_MERCHANT_ID, campaign_id=DEFAULT_CAMPAIGN_ID,
    ...                 variant_id=DEFAULT_VARIANT_ID, identifiers=["jane@example.com"])
    ...             await client.wait_for_job(job.id, merchant_id=DEFAULT_MERCHANT_ID)
    ...         assert emu.state.issued_count("email", "jane@example.com") == 1

With pytest, the ``thanx_emulator`` and ``thanx_client`` fixtures are
available as soon as thanx-async is installed (pytest-asyncio required); use
``@pytest.mark.thanx_emulator(speed=..., start_delay=...)`` for options.
Standalone: ``python -m thanx_async.testing --port 8400``.

With ``webhook_url=`` (or ``--webhook-url``) the emulator also posts signed
``reward.issued`` and ``reward_batch.completed`` webhooks when jobs end, with
scriptable faults (``state.webhooks.faults``) and a record of every delivery
(``state.webhooks.deliveries``).

:class:`RedisServer` starts a real ``redis-server`` on a free port, for
testing code that uses the Redis backends.
"""

# Names are imported on first use (PEP 562), so importing the package (which
# pytest does for every run through our plugin) stays cheap.

from __future__ import annotations

from typing import TYPE_CHECKING

from thanx_async._lazy import lazy_namespace

if TYPE_CHECKING:
    from thanx_async.testing._app import build_app
    from thanx_async.testing._catalog import (
        DEFAULT_CAMPAIGN_ID,
        DEFAULT_MERCHANT_ID,
        DEFAULT_VARIANT_ID,
        OTHER_CAMPAIGN_ID,
        OTHER_MERCHANT_ID,
        Campaign,
        Variant,
    )
    from thanx_async.testing._clock import ManualClock
    from thanx_async.testing._faults import Fault, Faults
    from thanx_async.testing._jobs import Job, LedgerEntry
    from thanx_async.testing._records import (
        DEFAULT_ACCESS_TOKEN,
        DEFAULT_CLIENT_ID,
        READONLY_ACCESS_TOKEN,
        READONLY_CLIENT_ID,
        Credential,
        LoggedRequest,
    )
    from thanx_async.testing._redis_server import AOF_ALWAYS, RedisServer
    from thanx_async.testing._server import ThanxEmulator, main, run_forever
    from thanx_async.testing._state import EmulatorState, default_not_found
    from thanx_async.testing._webhook_faults import WebhookFault, WebhookFaults
    from thanx_async.testing._webhooks import (
        DEFAULT_WEBHOOK_SECRET,
        WebhookDelivery,
        WebhookOutbox,
    )

_EXPORTS = {
    "AOF_ALWAYS": "thanx_async.testing._redis_server",
    "Campaign": "thanx_async.testing._catalog",
    "Credential": "thanx_async.testing._records",
    "DEFAULT_ACCESS_TOKEN": "thanx_async.testing._records",
    "DEFAULT_CAMPAIGN_ID": "thanx_async.testing._catalog",
    "DEFAULT_CLIENT_ID": "thanx_async.testing._records",
    "DEFAULT_MERCHANT_ID": "thanx_async.testing._catalog",
    "DEFAULT_VARIANT_ID": "thanx_async.testing._catalog",
    "DEFAULT_WEBHOOK_SECRET": "thanx_async.testing._webhooks",
    "EmulatorState": "thanx_async.testing._state",
    "Fault": "thanx_async.testing._faults",
    "Faults": "thanx_async.testing._faults",
    "Job": "thanx_async.testing._jobs",
    "LedgerEntry": "thanx_async.testing._jobs",
    "LoggedRequest": "thanx_async.testing._records",
    "ManualClock": "thanx_async.testing._clock",
    "OTHER_CAMPAIGN_ID": "thanx_async.testing._catalog",
    "OTHER_MERCHANT_ID": "thanx_async.testing._catalog",
    "READONLY_ACCESS_TOKEN": "thanx_async.testing._records",
    "READONLY_CLIENT_ID": "thanx_async.testing._records",
    "RedisServer": "thanx_async.testing._redis_server",
    "ThanxEmulator": "thanx_async.testing._server",
    "Variant": "thanx_async.testing._catalog",
    "WebhookDelivery": "thanx_async.testing._webhooks",
    "WebhookFault": "thanx_async.testing._webhook_faults",
    "WebhookFaults": "thanx_async.testing._webhook_faults",
    "WebhookOutbox": "thanx_async.testing._webhooks",
    "build_app": "thanx_async.testing._app",
    "default_not_found": "thanx_async.testing._state",
    "main": "thanx_async.testing._server",
    "run_forever": "thanx_async.testing._server",
}

__all__ = [
    "AOF_ALWAYS",
    "DEFAULT_ACCESS_TOKEN",
    "DEFAULT_CAMPAIGN_ID",
    "DEFAULT_CLIENT_ID",
    "DEFAULT_MERCHANT_ID",
    "DEFAULT_VARIANT_ID",
    "DEFAULT_WEBHOOK_SECRET",
    "OTHER_CAMPAIGN_ID",
    "OTHER_MERCHANT_ID",
    "READONLY_ACCESS_TOKEN",
    "READONLY_CLIENT_ID",
    "Campaign",
    "Credential",
    "EmulatorState",
    "Fault",
    "Faults",
    "Job",
    "LedgerEntry",
    "LoggedRequest",
    "ManualClock",
    "RedisServer",
    "ThanxEmulator",
    "Variant",
    "WebhookDelivery",
    "WebhookFault",
    "WebhookFaults",
    "WebhookOutbox",
    "build_app",
    "default_not_found",
    "main",
    "run_forever",
]


__getattr__, __dir__ = lazy_namespace(__name__, _EXPORTS, __all__, globals())
