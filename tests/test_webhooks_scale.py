"""Issue 16's "done when", at full scale: 100,000 identifiers, zero polls, outcomes within ~0.5 s.

The emulator runs as a process of its own (``benchmarks._emulator``: the
emulator of ``thanx_async.testing`` with its webhook sender, reporting each
job's exact end on ``time.monotonic``, which both processes read alike on
Linux), so what is timed is this process's work alone. It delivers
``reward_batch.completed`` to a real aiohttp ``WebhookReceiver`` here, with
Thanx's limits (5 requests per second); the batcher POSTs ten full batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import coverage
import pytest
from aiohttp import web

import thanx_async as ta
from benchmarks._emulator import EmulatorProcess
from thanx_async.testing import (
    DEFAULT_ACCESS_TOKEN,
    DEFAULT_CAMPAIGN_ID,
    DEFAULT_CLIENT_ID,
    DEFAULT_MERCHANT_ID,
    DEFAULT_VARIANT_ID,
    DEFAULT_WEBHOOK_SECRET,
)
from thanx_async.webhooks import WebhookReceiver

pytestmark = pytest.mark.slow

N = 100_000
#: Jobs of 0.7 s (10,000 identifiers at 20,000/s after 0.2 s), Thanx's rate limits.
JOBS: dict[str, Any] = {"speed": 20_000.0, "start_delay": 0.2, "per_second": 5}
#: The issue's bound on the time from a job's end to its outcomes (the median job here;
#: benchmarks W1-webhooks and W2-webhooks measure it on a quiet machine, every job).
LATENCY = 0.5
#: Any job, on a loaded 2-core CI machine: still well before a safety-net poll (the
#: predicted end plus a 2 s grace), and the poll count (0) proves the webhooks did it.
LATENCY_WORST = 2.0


def person(i: int) -> str:
    """Every 100th one is unknown to the emulator; a fifth are phones."""
    if i % 100 == 0:
        return f"unknown{i}@example.com"
    return f"+1{2_000_000_000 + i}" if i % 5 == 1 else f"user{i}@example.com"


@contextlib.contextmanager
def untraced() -> Iterator[None]:
    """The SDK timed alone: not under coverage's tracer, not paying for the test session's heap.

    Coverage's line tracer slows this process several-fold. And after hundreds
    of tests the process holds a large heap that every full collection of the
    cyclic GC would walk while the outcomes resolve: it is frozen (left out of
    collections) for the timed part, as a long-running application's start-up
    heap would be after ``gc.freeze()``.
    """
    gc.collect()
    gc.freeze()
    tracer = coverage.Coverage.current()
    if tracer is not None:
        tracer.stop()
    try:
        yield
    finally:
        if tracer is not None:
            tracer.start()
        gc.unfreeze()


@dataclass
class Run:
    """What one run of N identifiers gave."""

    outcomes: list[ta.IssuanceOutcome]
    #: Job id -> seconds from the job's end to the last outcome of its batch.
    late: dict[str, float]
    #: The emulator's counters (requests by status, deliveries by event and answer).
    server: dict[str, Any]
    batcher: ta.BatcherStats
    receiver: WebhookReceiver

    @property
    def gets(self) -> int:
        return sum(n for key, n in self.server["by_status"].items() if key.startswith("GET"))


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[WebhookReceiver, str]]:
    """A WebhookReceiver served by aiohttp on 127.0.0.1, and its URL."""
    receiver = WebhookReceiver(secret=DEFAULT_WEBHOOK_SECRET)
    app = web.Application()
    app.router.add_post("/webhooks/thanx", receiver.aiohttp_handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield receiver, f"http://127.0.0.1:{runner.addresses[0][1]}/webhooks/thanx"
    finally:
        await runner.cleanup()


async def run(receiver: WebhookReceiver, url: str, **faults: float) -> Run:
    """Issue N identifiers, the emulator delivering completions to ``url`` (with ``faults``)."""
    webhooks: dict[str, object] = {
        "url": url,
        "events": "reward_batch.completed",
        "secret": DEFAULT_WEBHOOK_SECRET,
    }
    async with EmulatorProcess(**JOBS, webhooks=webhooks | faults) as emulator:
        client = ta.ThanxClient(
            client_id=DEFAULT_CLIENT_ID,
            access_token=DEFAULT_ACCESS_TOKEN,
            base_url=emulator.url,
            rate_limit=ta.RateLimit(per_second=5),
        )
        batcher = ta.RewardBatcher(
            client,
            merchant_id=DEFAULT_MERCHANT_ID,
            campaign_id=DEFAULT_CAMPAIGN_ID,
            variant_id=DEFAULT_VARIANT_ID,
            # Batches seal at 10,000 only (the last at close), however slowly this
            # process submits (under coverage's tracer, on a loaded CI machine).
            max_wait=60.0,
        )
        receiver.add_sink(batcher)
        resolved_at = [0.0] * N

        def stamp(i: int) -> Callable[[object], None]:
            return lambda _: resolved_at.__setitem__(i, time.monotonic())

        async with client, batcher:
            futures = []
            for i in range(N):
                future = await batcher.submit(person(i))
                future.add_done_callback(stamp(i))
                futures.append(future)
                if i % 100 == 99:
                    await asyncio.sleep(0)  # the producer hands over a page per loop turn
            outcomes = list(await asyncio.gather(*futures))
        server = await emulator.stats()
    late: dict[str, float] = {}
    for i, outcome in enumerate(outcomes):
        assert outcome.issued == (i % 100 != 0), (i, outcome)
        assert outcome.job_id is not None
        end = server["timings"][outcome.job_id][1]
        late[outcome.job_id] = max(late.get(outcome.job_id, 0.0), resolved_at[i] - end)
    assert server["by_status"]["POST 202"] == server["jobs"] == len(late) == 10
    return Run(outcomes, late, server, batcher.stats(), receiver)


async def test_100000_identifiers_resolve_without_a_poll_within_half_a_second_of_their_jobs(
    receiver: tuple[WebhookReceiver, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Webhooks on: 100,000 outcomes from ten POSTs, 0 polls, each within 0.5 s of its job's end."""
    # Neither process is timed under coverage's tracer (its subprocess hook reads this).
    monkeypatch.delenv("COVERAGE_PROCESS_CONFIG", raising=False)
    with untraced():
        result = await run(*receiver)
    late = sorted(result.late.values())
    print(  # noqa: T201 - the measured figures, shown by pytest -s
        f"{N:,} identifiers, 10 jobs, 0 polls; from a job's end to its last outcome: "
        f"median {late[len(late) // 2] * 1000:.0f} ms, max {late[-1] * 1000:.0f} ms"
    )
    assert result.server["by_status"] == {"POST 202": 10}  # not one GET
    assert result.batcher.polls == 0
    assert result.server["webhooks"] == {"reward_batch.completed 200": 10}
    assert late[0] > 0.0
    # The issue's ~0.5 s, with room for a CI machine loaded by the rest of the suite
    # (the benchmarks measure it on a quiet one: W1-webhooks, W2-webhooks).
    assert late[len(late) // 2] <= 2 * LATENCY, late
    assert late[-1] <= LATENCY_WORST, late


async def test_lost_forged_and_duplicated_deliveries_at_scale_change_no_outcome(
    receiver: tuple[WebhookReceiver, str],
) -> None:
    """Completions dropped, signed wrong, sent twice (seeded draws): every outcome right."""
    result = await run(*receiver, drop=0.35, bad_signature=0.35, duplicate=0.35)
    sent = result.server["webhooks"]
    forged = sent.get("reward_batch.completed 401", 0)
    delivered = sent.get("reward_batch.completed 200", 0)
    stats = result.receiver.stats
    assert stats.unauthorized == forged
    # Every job whose completion came in time was finished by it; the others
    # (dropped, or refused for their signature) were polled.
    finished_by_webhook = delivered - stats.duplicates
    unheard = 10 - finished_by_webhook
    print(  # noqa: T201 - what the faults did, shown by pytest -s
        f"deliveries {sent}; {stats.duplicates} duplicates not handed on; "
        f"{unheard} jobs polled ({result.gets} polls)"
    )
    assert forged >= 1
    assert stats.duplicates >= 1
    assert unheard >= forged + 1  # at least one dropped too (seeded draws)
    assert unheard <= result.gets <= 3 * unheard
