"""The client process's webhook endpoint, for the runs where the emulator delivers webhooks.

A :class:`~thanx_async.webhooks.WebhookReceiver` served by aiohttp on a free
port of 127.0.0.1, in the client process (its work counts in the client's CPU
and loop lag, as it would in an application), started before the emulator so
the emulator can be told where to post.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from thanx_async.testing import DEFAULT_WEBHOOK_SECRET
from thanx_async.webhooks import WebhookReceiver

PATH = "/webhooks/thanx"


class WebhookSite:
    """A running WebhookReceiver on 127.0.0.1; ``url`` is what the emulator posts to."""

    def __init__(self) -> None:
        self.receiver = WebhookReceiver(secret=DEFAULT_WEBHOOK_SECRET)
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post(PATH, self.receiver.aiohttp_handler)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}{PATH}"

    def emulator_options(self, events: str) -> dict[str, object]:
        """The emulator's ``--webhook-*`` options to deliver ``events`` (comma-separated) here."""
        return {"url": self.url, "events": events, "secret": DEFAULT_WEBHOOK_SECRET}

    def attach(self, contender: object) -> None:
        """Hand the contender's batcher every delivery (it then expects them: polls late)."""
        batcher = getattr(contender, "batcher", None)
        if batcher is None:
            raise ValueError(f"{getattr(contender, 'name', contender)} cannot receive webhooks")
        self.receiver.add_sink(batcher)

    def extra(self, emulator_stats: dict[str, Any]) -> dict[str, Any]:
        """The receiver's counters and the emulator's deliveries, for the run's result."""
        stats = self.receiver.stats
        return {
            "webhooks_received": stats.received,
            "webhooks_accepted": stats.accepted,
            "webhooks_claimed": stats.claimed,
            "webhooks_duplicates": stats.duplicates,
            "webhooks_sent": emulator_stats.get("webhooks", {}),
        }

    async def aclose(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
