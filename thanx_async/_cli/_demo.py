"""``thanx-async demo``: a realistic event stream through RewardBatcher, against the emulator.

The emulator runs in-process with the limits Thanx documents (5 requests per
second, 2,000 per 15 minutes); its jobs take a couple of seconds, like real
ones. The stream mimics an event consumer: many concurrent tasks deliver
events at a steady rate, each naming a person (emails and phones, a few
malformed, some not Thanx users), one of several campaign variants, and an
event id passed as the dedupe key; a few events are delivered twice, as
at-least-once consumers do. At the end the emulator's own ledger is checked:
nobody may have been rewarded twice.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import attrs

from thanx_async._batcher import RewardBatcher
from thanx_async._cli._common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    Consoles,
)
from thanx_async._cli._drive import Outstanding, StopSignal, drive
from thanx_async._cli._progress import (
    LiveProgress,
    Snapshot,
    Tally,
    outcome_rows,
    request_rows,
    summary_table,
    timing_rows,
)
from thanx_async._cli._report import Status
from thanx_async._client import ThanxClient
from thanx_async._errors import InvalidIdentifierError
from thanx_async._identifiers import Identifier
from thanx_async._outcomes import IssuanceOutcome
from thanx_async.testing import (
    DEFAULT_ACCESS_TOKEN,
    DEFAULT_CAMPAIGN_ID,
    DEFAULT_CLIENT_ID,
    DEFAULT_MERCHANT_ID,
    DEFAULT_VARIANT_ID,
    ThanxEmulator,
)

__all__ = ["DemoOptions", "Event", "generate", "run_demo"]

#: (campaign, variant, share of the stream): seeded campaigns of the emulator's demo merchant.
TARGETS: tuple[tuple[str, str, float], ...] = (
    (DEFAULT_CAMPAIGN_ID, DEFAULT_VARIANT_ID, 0.50),
    (DEFAULT_CAMPAIGN_ID, "var_welcome_discount", 0.10),
    ("camp_birthday", "var_birthday_dessert", 0.25),
    ("camp_winback", "var_winback_5_off", 0.15),
)
INVALID_SHARE = 0.0005
UNKNOWN_SHARE = 0.02
REDELIVERY_SHARE = 0.005
EMAIL_SHARE = 0.6

_FIRST = (
    "olivia", "liam", "emma", "noah", "ava", "mateo", "sofia", "lucas", "mia", "ethan",
    "amara", "kenji", "priya", "diego", "fatima", "jonas", "chloe", "omar", "lena", "wei",
)  # fmt: skip
_LAST = (
    "smith", "garcia", "kim", "nguyen", "patel", "johnson", "muller", "rossi", "silva",
    "cohen", "okafor", "tanaka", "brown", "lopez", "martin", "dubois", "novak", "haddad",
)  # fmt: skip
_DOMAINS = ("gmail.com", "yahoo.com", "outlook.com", "icloud.com", "example.com", "proton.me")
_AREA_CODES = ("212", "213", "305", "312", "415", "512", "617", "646", "702", "818", "917")


@attrs.frozen(slots=True)
class Event:
    """One event of the stream: who, for which campaign variant, and its id (the dedupe key)."""

    id: str
    identifier: str
    campaign_id: str
    variant_id: str
    redelivery: bool = False


@attrs.frozen(kw_only=True)
class DemoOptions:
    """What ``thanx-async demo`` was asked to do (see its ``--help``)."""

    count: int = 100_000
    producers: int = 32
    rate: float = 25_000.0
    seed: int = 2024
    job_speed: float = 5_000.0
    start_delay: float = 0.5
    max_wait: float = 1.0
    grace: float = 10.0
    progress: bool = True


def _invalid(rng: random.Random, i: int) -> str:
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    forms = (
        f"{first}.{last}@",
        f"{first}@@{rng.choice(_DOMAINS)}",
        f"555-01{i % 100:02d}",
        f"(415) 555-{i % 10_000:04d}",
        f"{first} {last}",
        "n/a",
    )
    return rng.choice(forms)


def _person(rng: random.Random, i: int) -> str:
    if rng.random() < INVALID_SHARE:
        return _invalid(rng, i)
    unknown = rng.random() < UNKNOWN_SHARE
    if rng.random() < EMAIL_SHARE:
        local = f"{rng.choice(_FIRST)}.{rng.choice(_LAST)}{i}"
        if unknown:  # the emulator's rule: a local part starting "unknown" is not a Thanx user
            local = f"unknown.{local}"
        email = f"{local}@{rng.choice(_DOMAINS)}"
        return email.title() if rng.random() < 0.05 else email  # some arrive mixed-case
    if unknown:  # the emulator's rule: a phone ending 0000 is not a Thanx user
        return f"+1{rng.choice(_AREA_CODES)}{i % 1000:03d}0000"
    return f"+1{rng.choice(_AREA_CODES)}{i:07d}"


def generate(count: int, seed: int) -> list[Event]:
    """A deterministic stream of ``count`` events (the same seed gives the same stream)."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible demo stream, not secrets
    weights = [share for _, _, share in TARGETS]
    events: list[Event] = []
    for i in range(count):
        if events and rng.random() < REDELIVERY_SHARE:
            # At-least-once delivery: a recent event arrives again, same id.
            original = events[-rng.randint(1, min(200, len(events)))]
            events.append(attrs.evolve(original, redelivery=True))
            continue
        campaign_id, variant_id, _ = rng.choices(TARGETS, weights)[0]
        events.append(Event(f"evt_{i:07d}", _person(rng, i), campaign_id, variant_id))
    return events


def _retrieve(future: asyncio.Future[IssuanceOutcome]) -> None:
    if not future.cancelled():
        future.exception()  # mark it retrieved: its twin reports the outcome


class _Demo:
    def __init__(self, options: DemoOptions, consoles: Consoles, events: list[Event]) -> None:
        self.options = options
        self.consoles = consoles
        self.events = events
        self.tally = Tally(expected=len(events))
        self.outstanding = Outstanding(self.tally)
        self.redelivered = 0
        self.failures: Counter[str] = Counter()
        self.outstanding.on_settled = self._settled

    def _settled(
        self,
        ref: int,
        ident: Identifier | None,
        status: Status,
        job_id: str | None,
        error: str | None,
    ) -> None:
        if status is Status.FAILED:
            self.failures[error or "failed"] += 1

    async def feed(self, batcher: RewardBatcher) -> None:
        """Deliver every event from ``producers`` concurrent tasks at the chosen rate."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        n = max(1, self.options.producers)
        await asyncio.gather(
            *(self._produce(batcher, range(p, len(self.events), n), start) for p in range(n))
        )

    async def _produce(self, batcher: RewardBatcher, indices: range, start: float) -> None:
        loop = asyncio.get_running_loop()
        rate = self.options.rate
        for index in indices:
            if rate > 0:
                ahead = start + index / rate - loop.time()
                if ahead > 0.005:  # wake in small bursts rather than once per event
                    await asyncio.sleep(ahead)
            event = self.events[index]
            self.tally.read += 1
            try:
                future = await batcher.submit(
                    event.identifier,
                    campaign_id=event.campaign_id,
                    variant_id=event.variant_id,
                    dedupe_key=event.id,
                )
            except InvalidIdentifierError:
                self.tally.invalid += 1
                continue
            if event.redelivery:
                # Joins the first delivery's submission: same outcome, not counted twice.
                self.redelivered += 1
                future.add_done_callback(_retrieve)
                continue
            self.outstanding.add(future, index)

    def summary(
        self, snapshot: Snapshot, emulator: ThanxEmulator
    ) -> tuple[list[tuple[str, str]], bool]:
        """The summary rows, and whether the emulator's ledger shows nobody rewarded twice."""
        t, o = self.tally, self.options
        counts = emulator.state.issuance_counts()
        twice = sum(1 for times in counts.values() if times > 1)
        rows = [
            ("events streamed", f"{t.read:,}  ({o.producers} concurrent producers)"),
            ("campaign variants", f"{len(TARGETS)}"),
            ("invalid (refused at submit)", f"{t.invalid:,}"),
            ("redeliveries (joined the first)", f"{self.redelivered:,}"),
            ("distinct submissions", f"{t.submitted:,}"),
            *outcome_rows(t)[:2],
            *(
                (f"  failed: {reason}", f"{times:,}")
                for reason, times in self.failures.most_common(3)
            ),
            *outcome_rows(t)[2:],
            *request_rows(snapshot),
            *timing_rows(snapshot),
            (
                "emulator ledger",
                f"{sum(counts.values()):,} rewards, "
                + ("nobody rewarded twice" if not twice else f"[red]{twice:,} rewarded twice[/]"),
            ),
        ]
        return rows, twice == 0


async def run_demo(options: DemoOptions, consoles: Consoles) -> int:
    """Run the demo; returns the exit status."""
    events = generate(options.count, options.seed)
    async with ThanxEmulator(start_delay=options.start_delay, speed=options.job_speed) as emulator:
        state = emulator.state
        consoles.note(
            f"Thanx API emulator on {emulator.url}: {state.rate_limit_per_second} requests/s and "
            f"{state.rate_limit_per_window:,} per {state.rate_limit_window / 60:g} min (Thanx's "
            f"documented limits); jobs start after {options.start_delay:g} s and process "
            f"{options.job_speed:,.0f} identifiers/s."
        )
        pace = f"{options.rate:,.0f} events/s" if options.rate > 0 else "as fast as possible"
        consoles.note(
            f"Streaming {len(events):,} events ({pace}, {options.producers} concurrent producers) "
            f"into {len(TARGETS)} campaign variants: emails and phones, a few invalid, about "
            f"{UNKNOWN_SHARE:.0%} unknown users, {REDELIVERY_SHARE:.1%} redelivered."
        )
        async with ThanxClient(
            client_id=DEFAULT_CLIENT_ID, access_token=DEFAULT_ACCESS_TOKEN, base_url=emulator.url
        ) as client:
            batcher = RewardBatcher(
                client,
                merchant_id=DEFAULT_MERCHANT_ID,
                max_wait=options.max_wait,
                close_timeout=options.grace,
            )
            demo = _Demo(options, consoles, events)
            progress = LiveProgress(
                consoles,
                f"thanx-async demo · {len(events):,} events",
                demo.tally,
                client,
                batcher,
                enabled=options.progress,
            )
            with StopSignal() as stop:
                async with progress:
                    async with batcher:
                        interrupted = await drive(demo.feed(batcher), batcher, demo.tally, stop)
                        if interrupted:
                            consoles.note(
                                f"Stopping: no more events; waiting up to {options.grace:g} s "
                                "for outcomes (Ctrl-C again aborts)."
                            )
                    await demo.outstanding.abandon()
            rows, once = demo.summary(progress.snapshot(), emulator)
            consoles.out.print(summary_table("Demo summary", rows))
    if interrupted:
        consoles.note(f"Interrupted: {demo.tally.unresolved:,} identifiers unresolved.")
        return EXIT_INTERRUPTED
    if not once or demo.tally.unresolved:
        return EXIT_FAILED
    consoles.note(
        "Next: `thanx-async emulator` serves this emulator on a port; point THANX_BASE_URL at it "
        "and try `thanx-async issue` on a CSV of your own."
    )
    return EXIT_OK
