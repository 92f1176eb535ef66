"""Issue rewards from a Redis Streams consumer group, exactly once across crashes and consumers.

Each stream message carries ``identifier`` (and optionally ``campaign_id`` /
``variant_id``). Run as many consumers as you like in one consumer group;
each one:

1. reads a block of messages (first its own unacknowledged ones, left by a
   crash, then new ones), and every ``--claim-every`` seconds claims
   (``XAUTOCLAIM``) messages a dead consumer left unacknowledged for longer
   than ``--claim-idle`` seconds;
2. submits them all to a RewardBatcher on the shared ledger (``RedisJournal``)
   and the shared rate budget (``RedisRateLimiter``), with the stream message id
   as the dedupe key; ``submit()`` returns only once Redis acknowledged the
   admission (the *durable ack*);
3. only then acknowledges the messages (XACK).

A crash between 2 and 3 redelivers the messages, to this consumer or (claimed)
to another: the ledger recognises their dedupe keys, fleet-wide, and nobody is
rewarded twice. A crash before 2 loses nothing: the messages were never
acknowledged. A crash after 3 loses nothing either: once the dead consumer's
lease expires, a live one adopts its journaled work and reports the outcomes
through ``on_outcome``. Outcomes are appended to ``<stream>:outcomes``;
messages without a valid identifier go to ``<stream>:dead`` (and are acknowledged).

One consumer on its own can use a SQLite journal instead (``--journal rewards.db``).

Run it (each consumer in its own process)::

    THANX_CLIENT_ID=... THANX_ACCESS_TOKEN=... THANX_BASE_URL=... \\
        python examples/redis_consumer.py --redis redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError
from redis.typing import EncodableT, FieldT

import thanx_async as ta
from thanx_async.redis import RedisJournal, RedisRateLimiter

GROUP = "thanx-rewards"
log = logging.getLogger("consumer")


def stream_messages(reply: Any) -> list[tuple[str, dict[str, str]]]:
    """The messages of an XREADGROUP reply on one stream (RESP2 list or RESP3 map)."""
    if not reply:
        return []
    if isinstance(reply, dict):  # RESP3: {stream: [messages]}
        (messages,) = reply.values()
        return list(messages[0] if messages and isinstance(messages[0], list) else messages)
    return list(reply[0][1])  # RESP2: [[stream, [messages]]]


def invalid_reason(fields: dict[str, str]) -> str | None:
    """Why a message cannot be issued (it goes to the dead-letter stream), or None."""
    if "identifier" not in fields:
        return f"the message has no 'identifier' field (its fields: {', '.join(fields) or 'none'})"
    try:
        ta.Identifier.parse(fields["identifier"])
    except ta.InvalidIdentifierError as exc:
        return exc.reason
    return None


class Consumer:
    def __init__(self, redis: aioredis.Redis, stream: str, claim_idle: float) -> None:
        self.redis = redis
        self.stream = stream
        # One name per process: a restarted consumer is a new one, and what the old
        # one left unacknowledged is claimed like any dead consumer's.
        self.name = os.environ.get("CONSUMER_NAME", f"{socket.gethostname()}-{os.getpid()}")
        self.claim_idle = claim_idle
        self.outcomes: list[dict[FieldT, EncodableT]] = []  # to <stream>:outcomes in bulk
        self.stopping = asyncio.Event()
        self.batcher: ta.RewardBatcher  # set by main() once the batcher exists

    # --8<-- [start:run]
    async def run(self, idle_exit: float | None) -> None:
        with contextlib.suppress(ResponseError):  # BUSYGROUP: the group already exists
            await self.redis.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        cursor = "0"  # our own pending messages first: delivered before a crash, never acked
        idle = 0.0
        loop = asyncio.get_running_loop()
        next_claim = loop.time() + self.claim_idle
        while not self.stopping.is_set():
            reply = await self.redis.xreadgroup(
                GROUP, self.name, {self.stream: cursor}, count=1000, block=500
            )
            messages = stream_messages(reply)
            if not messages and cursor == "0":
                cursor = ">"  # backlog done: from now on, new messages only
                continue
            if loop.time() >= next_claim:
                messages += await self.claim()
                next_claim = loop.time() + self.claim_idle / 2
            await self.handle(messages)
            await self.write_outcomes()
            idle = 0.0 if messages else idle + 0.5
            if idle_exit is not None and idle >= idle_exit and self.batcher.stats().pending == 0:
                break

    # --8<-- [end:run]

    # --8<-- [start:claim]
    async def claim(self) -> list[tuple[str, dict[str, str]]]:
        """Take over messages another consumer left unacknowledged for ``claim_idle`` s."""
        claimed: list[tuple[str, dict[str, str]]] = []
        start = "0-0"
        while True:
            reply = await self.redis.xautoclaim(
                self.stream, GROUP, self.name, int(self.claim_idle * 1000), start, count=1000
            )
            start, messages = reply[0], [m for m in reply[1] if m and m[1] is not None]
            claimed += messages
            if start in ("0-0", b"0-0") or not messages:
                return claimed

    # --8<-- [end:claim]

    # --8<-- [start:handle]
    async def handle(self, messages: list[tuple[str, dict[str, str]]]) -> None:
        """Submit a block of messages durably, then acknowledge them all at once."""
        valid: list[tuple[str, dict[str, str]]] = []
        dead: list[dict[FieldT, EncodableT]] = []
        for message_id, fields in messages:
            reason = invalid_reason(fields)
            if reason is None:
                valid.append((message_id, fields))
            else:
                identifier = fields.get("identifier", "")
                dead.append({"message_id": message_id, "identifier": identifier, "reason": reason})
        # Concurrent submits share one journal commit (one fsync for the whole block).
        futures = await asyncio.gather(
            *(
                self.batcher.submit(
                    fields["identifier"],
                    campaign_id=fields.get("campaign_id"),
                    variant_id=fields.get("variant_id"),
                    dedupe_key=message_id,  # a redelivered message is recognised, not re-issued
                )
                for message_id, fields in valid
            )
        )
        for future in futures:
            future.add_done_callback(self.record)
        async with self.redis.pipeline(transaction=False) as pipe:
            for entry in dead:
                pipe.xadd(f"{self.stream}:dead", entry)
            if messages:  # every submit above returned: the journal holds them
                pipe.xack(self.stream, GROUP, *(message_id for message_id, _ in messages))
            await pipe.execute()

    # --8<-- [end:handle]

    def record(self, future: asyncio.Future[ta.IssuanceOutcome]) -> None:
        if future.cancelled():
            return
        if (exc := future.exception()) is not None:
            # With a journal, an identifier still open at shutdown resumes on the next start.
            log.warning("no outcome yet: %s", exc)
            return
        self.record_outcome(future.result())

    def record_outcome(self, outcome: ta.IssuanceOutcome) -> None:
        """An outcome for the outcomes stream: from a caller, or adopted (``on_outcome``)."""
        self.outcomes.append(
            {
                "message_id": outcome.dedupe_key or "",
                "identifier": outcome.identifier.value,
                "status": outcome.status.value,
                "job_id": outcome.job_id or "",
                "error": outcome.error or "",
            }
        )

    async def write_outcomes(self) -> None:
        batch, self.outcomes = self.outcomes, []
        if batch:
            async with self.redis.pipeline(transaction=False) as pipe:
                for entry in batch:
                    pipe.xadd(f"{self.stream}:outcomes", entry)
                await pipe.execute()


# --8<-- [start:main]
async def main(args: argparse.Namespace) -> None:
    redis = aioredis.from_url(args.redis, decode_responses=True)
    consumer = Consumer(redis, args.stream, args.claim_idle)
    if args.journal:  # one consumer on its own: a SQLite journal and its own budget
        journal: ta.Journal | RedisJournal = ta.Journal(args.journal)
        limiter = None
    else:  # a consumer group: one ledger and one rate budget for every consumer
        journal = RedisJournal(args.redis, name=args.ledger, lease=args.lease)
        limiter = RedisRateLimiter(args.redis, rate_limit=ta.RateLimit())
    async with ta.ThanxClient.from_env(limiter=limiter) as client:
        batcher = ta.RewardBatcher(
            client,
            merchant_id=os.environ.get("THANX_MERCHANT_ID", "merchant_demo"),
            campaign_id=os.environ.get("THANX_CAMPAIGN_ID", "camp_welcome"),
            variant_id=os.environ.get("THANX_VARIANT_ID", "var_welcome_treat"),
            journal=journal,  # the durable ack, and dedupe of redeliveries for 24 h
            on_outcome=consumer.record_outcome,  # outcomes of work adopted from the dead
            close_timeout=10.0,
        )
        async with batcher:
            consumer.batcher = batcher
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, consumer.stopping.set)
            await consumer.run(args.idle_exit)
        # The batcher is closed: outcomes that arrived while closing are written too.
        await consumer.write_outcomes()
    await redis.aclose()


# --8<-- [end:main]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379"))
    parser.add_argument("--stream", default="rewards")
    parser.add_argument("--ledger", default="rewards", help="the shared ledger's name")
    parser.add_argument("--journal", help="a SQLite journal instead (one consumer only)")
    parser.add_argument("--lease", type=float, default=15.0, help="the ledger lease, seconds")
    parser.add_argument(
        "--claim-idle", type=float, default=30.0, help="claim others' messages idle this long"
    )
    parser.add_argument("--idle-exit", type=float, help="exit after S seconds without messages")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    asyncio.run(main(parser.parse_args()))
