"""Run the emulator on a socket: in a test (:class:`ThanxEmulator`) or standalone (:func:`main`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from thanx_async.testing._app import build_app
from thanx_async.testing._catalog import (
    DEFAULT_CAMPAIGN_ID,
    DEFAULT_MERCHANT_ID,
    DEFAULT_VARIANT_ID,
)
from thanx_async.testing._inspect import PREFIX, format_summary
from thanx_async.testing._records import DEFAULT_ACCESS_TOKEN, DEFAULT_CLIENT_ID
from thanx_async.testing._state import TIMESPECS, EmulatorState
from thanx_async.testing._webhook_options import (
    add_webhook_arguments,
    webhook_banner,
    webhook_options,
)
from thanx_async.testing._webhook_sender import WebhookSender

__all__ = ["ThanxEmulator", "main", "run_forever"]


class ThanxEmulator:
    """A running Thanx API emulator on 127.0.0.1 (a free port by default).

    Args:
        state: the state to serve; a new :class:`EmulatorState` by default.
        host: the address to bind (keep it on loopback).
        port: the port; ``0`` picks a free one.
        **state_options: keyword arguments for a new :class:`EmulatorState`
            (not allowed together with ``state``).

    Example:
        >>> async with ThanxEmulator(speed=float("inf")) as emu:
        ...     client = ThanxClient(client_id=DEFAULT_CLIENT_ID,
        ...                          access_token=DEFAULT_ACCESS_TOKEN, base_url=emu.url)
    """

    def __init__(
        self,
        state: EmulatorState | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        **state_options: Any,
    ) -> None:
        if state is not None and state_options:
            raise TypeError("pass either a state or state options, not both")
        self.state = state if state is not None else EmulatorState(**state_options)
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None
        self._webhooks: WebhookSender | None = None

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:54321`` (valid once started)."""
        if self._runner is None:
            raise RuntimeError("the emulator is not running")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Bind the socket and start serving."""
        if self._runner is not None:
            raise RuntimeError("the emulator is already running")
        # No access log (tests stay quiet); a short shutdown grace because a
        # scripted delay must not hold up the end of a test for long.
        runner = web.AppRunner(build_app(self.state), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self.port = int(runner.addresses[0][1])
        self._runner = runner
        self._webhooks = WebhookSender(self.state)
        await self._webhooks.start()

    async def stop(self) -> None:
        """Stop serving and close every connection (idempotent)."""
        sender, self._webhooks = self._webhooks, None
        if sender is not None:
            await sender.stop()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def deliver_webhooks(self) -> None:
        """Post every webhook due by the state's clock now, and wait until all are answered.

        The running emulator also delivers on its own within a few
        milliseconds; with a :class:`ManualClock`, advance the clock then
        await this to make delivery deterministic. Deliveries delayed past
        the clock's present are not waited for. See ``state.webhooks``.

        Raises:
            RuntimeError: the emulator is not running.
        """
        if self._webhooks is None:
            raise RuntimeError("the emulator is not running")
        await self._webhooks.drain()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


async def run_forever(port: int, host: str = "127.0.0.1", **options: Any) -> None:
    """Serve until cancelled (Ctrl-C) or SIGTERM; print the URL first and a summary at the end."""
    async with ThanxEmulator(host=host, port=port, **options) as emulator:
        print(  # noqa: T201 - this is the command's output
            f"Thanx API emulator listening on {emulator.url}\n"
            f"  X-ClientId:    {DEFAULT_CLIENT_ID}\n"
            f"  Authorization: Bearer {DEFAULT_ACCESS_TOKEN}\n"
            f"  merchant_id={DEFAULT_MERCHANT_ID} campaign_id={DEFAULT_CAMPAIGN_ID} "
            f"variant_id={DEFAULT_VARIANT_ID}\n"
            f"  what it saw: {emulator.url}{PREFIX}/summary (also {PREFIX}/requests, "
            f"{PREFIX}/ledger)\n"
            f"{webhook_banner(emulator.state.webhooks)}"
            "Press Ctrl+C to stop.",
            flush=True,
        )
        stopped = asyncio.Event()
        loop = asyncio.get_running_loop()
        handled = False
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            # `kill` (as after `thanx-async emulator &`) ends it like Ctrl-C: with the summary.
            loop.add_signal_handler(signal.SIGTERM, stopped.set)
            handled = True
        try:
            await stopped.wait()
        finally:
            if handled:
                loop.remove_signal_handler(signal.SIGTERM)
            print(format_summary(emulator.state), flush=True)  # noqa: T201 - command output


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m thanx_async.testing",
        description="Run the Thanx partner API emulator in the foreground.",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=int, default=8400, help="port; 0 picks one (default: %(default)s)"
    )
    parser.add_argument(
        "--speed", type=float, default=20_000.0, help="identifiers per second per job"
    )
    parser.add_argument(
        "--start-delay", type=float, default=0.2, help="seconds before a job starts"
    )
    parser.add_argument("--per-second", type=int, default=5, help="requests per second (0: off)")
    parser.add_argument("--per-window", type=int, default=2000, help="requests per window (0: off)")
    parser.add_argument("--window", type=float, default=900.0, help="long window in seconds")
    parser.add_argument(
        "--timespec",
        choices=TIMESPECS,
        default="seconds",
        help="precision of job timestamps (default: %(default)s, as the API documents)",
    )
    add_webhook_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """The ``python -m thanx_async.testing`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    options = {
        "speed": args.speed,
        "start_delay": args.start_delay,
        "rate_limit_per_second": args.per_second,
        "rate_limit_per_window": args.per_window,
        "rate_limit_window": args.window,
        "timespec": args.timespec,
        **webhook_options(args),
    }
    with contextlib.suppress(KeyboardInterrupt):
        try:
            asyncio.run(run_forever(args.port, args.host, **options))
        except OSError as error:
            print(f"cannot start the emulator: {error}", file=sys.stderr)  # noqa: T201
            return 1
    return 0
