"""The Thanx emulator as a separate process, with wire counters for the benchmarks.

Run as ``python -m benchmarks._emulator --speed ... --per-second ...``: it binds
127.0.0.1 on a free port, prints ``PORT <n>`` once it accepts connections, and
serves until killed. On top of :func:`thanx_async.testing.build_app` it adds

* 20 extra campaigns (``bench_camp_00`` .. ``bench_camp_19``, one variant each)
  for the mixed-partition workload;
* a middleware counting every request by method and status, and the arrival
  time (``time.monotonic``, comparable across processes on Linux) of each, served
  at ``GET /__bench/stats``. That path never reaches the emulator, so reading
  the counters costs no rate budget. It also gives every job's exact creation
  and end (``time.monotonic``): the job's stamps are whole seconds, too coarse
  to time sub-second jobs with.
* with ``--webhook-url``, the emulator's signed webhooks, posted there when
  jobs end, with the ``--webhook-*`` options of ``thanx-async emulator``
  (events, faults); ``/__bench/stats`` then also counts the deliveries sent
  and their answers.

The request log of the emulator is switched off: a 200,000-identifier run
would otherwise keep every body in memory.

:class:`EmulatorProcess` starts and stops it from the benchmark side.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, Self

import aiohttp
from aiohttp import web

from thanx_async.testing import DEFAULT_MERCHANT_ID, EmulatorState, build_app
from thanx_async.testing._webhook_options import add_webhook_arguments, webhook_options
from thanx_async.testing._webhook_sender import WebhookSender
from thanx_async.testing._webhooks import WebhookDelivery

STATS_PATH = "/__bench/stats"
PARTITIONS = 20


def partition_ids(k: int) -> tuple[str, str]:
    """Campaign and variant of the k-th benchmark partition."""
    return f"bench_camp_{k:02d}", f"bench_var_{k:02d}"


class _Counters:
    def __init__(self) -> None:
        self.by_status: Counter[str] = Counter()
        self.arrivals: list[tuple[float, str, int]] = []
        #: Webhook deliveries by event and answer ("reward_batch.completed 200": n).
        self.webhooks: Counter[str] = Counter()

    def snapshot(self) -> dict[str, Any]:
        return {
            "by_status": dict(self.by_status),
            "arrivals": self.arrivals,
            "webhooks": dict(self.webhooks),
        }


def _app(state: EmulatorState, counters: _Counters) -> web.Application:
    app = build_app(state)

    @web.middleware
    async def count(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path == STATS_PATH:
            timings = {job.id: [job.created, job.finished] for job in state.jobs.values()}
            return web.json_response(
                counters.snapshot() | {"jobs": len(state.jobs), "timings": timings}
            )
        arrived = time.monotonic()
        response = await handler(request)
        counters.by_status[f"{request.method} {response.status}"] += 1
        counters.arrivals.append((arrived, request.method[0], response.status))
        return response

    app.middlewares.append(count)
    return app


async def _serve(args: argparse.Namespace) -> None:
    state = EmulatorState(
        speed=args.speed,
        start_delay=args.start_delay,
        rate_limit_per_second=args.per_second or None,
        rate_limit_per_window=args.per_window or None,
        rate_limit_window=args.window,
        log_requests=False,
        timespec=args.timespec,
        **webhook_options(args),
    )
    for k in range(PARTITIONS):
        campaign, variant = partition_ids(k)
        state.add_campaign(DEFAULT_MERCHANT_ID, campaign, variants=[variant])
    counters = _Counters()
    runner = web.AppRunner(_app(state, counters), access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    sender = _CountingSender(state, counters) if args.webhook_url else None
    if sender is not None:
        await sender.start()
    print(f"PORT {port}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        if sender is not None:
            await sender.stop()
        await runner.cleanup()


class _CountingSender(WebhookSender):
    """The emulator's webhook sender, counting deliveries by event and answer."""

    def __init__(self, state: EmulatorState, counters: _Counters) -> None:
        super().__init__(state)
        self._counters = counters

    async def _post(self, delivery: WebhookDelivery) -> None:
        await super()._post(delivery)
        answer = delivery.status if delivery.status is not None else "error"
        self._counters.webhooks[f"{delivery.event} {answer}"] += 1


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._emulator")
    parser.add_argument("--speed", type=float, default=20_000.0)
    parser.add_argument("--start-delay", type=float, default=0.2)
    parser.add_argument("--per-second", type=int, default=5)
    parser.add_argument("--per-window", type=int, default=2000)
    parser.add_argument("--window", type=float, default=900.0)
    parser.add_argument("--timespec", default="seconds")
    add_webhook_arguments(parser)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))


class EmulatorProcess:
    """Start the emulator in a child process, wait until it accepts, kill it on exit.

    Args:
        speed: identifiers per second per job (``inf``: instant).
        start_delay: seconds from a job's creation to ``processing``.
        per_second: requests per second (0: off).
        per_window: requests per long window (0: off).
        window: long window, in seconds.
        timespec: precision of the jobs' timestamps (``seconds``, as the API documents).
        webhooks: ``--webhook-*`` options of ``thanx-async emulator`` without
            the prefix (``{"url": ..., "events": "reward_batch.completed",
            "drop": 0.1}``); none: no webhooks.
    """

    def __init__(
        self,
        *,
        speed: float = 20_000.0,
        start_delay: float = 0.2,
        per_second: int = 5,
        per_window: int = 2000,
        window: float = 900.0,
        timespec: str = "seconds",
        webhooks: Mapping[str, object] | None = None,
    ) -> None:
        self.options: dict[str, object] = {
            "--speed": speed,
            "--start-delay": start_delay,
            "--per-second": per_second,
            "--per-window": per_window,
            "--window": window,
            "--timespec": timespec,
        }
        for name, value in (webhooks or {}).items():
            self.options[f"--webhook-{name.replace('_', '-')}"] = value
        self._proc: asyncio.subprocess.Process | None = None
        self.url = ""

    async def __aenter__(self) -> Self:
        argv = [f"{k}={v}" for k, v in self.options.items()]
        self._proc = proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "benchmarks._emulator", *argv, stdout=asyncio.subprocess.PIPE
        )
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            port = int(line.split()[1]) if line.startswith(b"PORT ") else 0
            if port:
                self.url = f"http://127.0.0.1:{port}"
                await self._wait_accepting(port)
        except BaseException:
            await self._kill()
            raise
        if not port:
            await self._kill()
            raise RuntimeError(f"emulator did not start: {line!r}")
        return self

    @staticmethod
    async def _wait_accepting(port: int) -> None:
        for _ in range(100):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            await writer.wait_closed()
            return
        raise RuntimeError(f"emulator on port {port} does not accept connections")

    async def stats(self) -> dict[str, Any]:
        """The counters: ``by_status``, ``arrivals``, ``jobs``, ``timings``, ``webhooks``."""
        async with aiohttp.ClientSession() as session, session.get(self.url + STATS_PATH) as resp:
            result: dict[str, Any] = await resp.json()
            return result

    async def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        try:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 5)
        except ProcessLookupError:  # it exited between the check and the signal
            pass
        except TimeoutError:
            proc.kill()
            await proc.wait()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._kill()


if __name__ == "__main__":
    main()
