"""The contract floor: the least work any batcher with RewardBatcher's contract can do.

Not a baseline and not usable: an instrument for one question. Can *any*
implementation of RewardBatcher's public contract reach the W1 targets
(throughput >= 1.2x the hand-rolled batcher (c), client CPU <= 0.8x)? If this
floor cannot, no amount of tuning RewardBatcher can.

It keeps only what the contract makes every implementation do per identifier,
each with the cheapest CPython primitive we know, and nothing else:

- ``await submit()`` (a coroutine per call), which validates and normalises
  the identifier (``normalise``, the SDK's one-regex fast path) and refuses an
  invalid one;
- dedupe of a pending identifier (one dict lookup, insert and delete);
- back-pressure at ``max_pending`` (a counter, and an event when full);
- one ``asyncio.Future`` per identifier (``loop.create_future``, in C), kept
  in plain lists with the values: no entry object;
- a body of ``{"type": ..., "value": ...}`` items and a deterministic
  idempotency key: SHA-256 of the body itself (cheaper than the SDK's
  canonical text, which makes keys independent of field order and escaping);
- the SDK's predictive job tracker, so it polls as rarely as RewardBatcher;
- one :class:`~thanx_async.IssuanceOutcome` (with its
  :class:`~thanx_async.Identifier`) per identifier, built by filling slots,
  the cheapest way found.

It leaves out what the contract also asks and would only add work: sealing
on ``max_wait`` (W1 seals on size; the end of input seals the rest), limits
on POSTs in flight, dedupe keys, cancellation, retries of a refused batch,
the journal, logging, stats, resolving in slices. So it does strictly less
than any correct implementation, and is only ever run on W1.

Two knobs answer the objections to that conclusion. ``deferred=True``
resolves outcomes only while intake is stalled by back-pressure or has ended,
so resolving overlaps the wait for the last job instead of slowing intake
(the best any scheduling can do). ``max_pending`` set out of reach shows what
the contract's back-pressure (DESIGN: about ten full batches) costs in W1;
that run is not the contract.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import thanx_async as ta
from thanx_async._identifiers import normalise
from thanx_async._jobs import JobTracker
from thanx_async._outcomes import _IDENTIFIER_SETTERS, _OUTCOME_SETTERS, JobVerdict

_new = object.__new__


class ContractFloor:
    """One partition; seals at ``max_batch_size`` and when the input ends."""

    def __init__(
        self,
        client: ta.ThanxClient,
        *,
        merchant_id: str,
        campaign_id: str,
        variant_id: str,
        max_batch_size: int = 10_000,
        max_pending: int = 100_000,
        deferred: bool = False,
    ) -> None:
        self._client, self._merchant = client, merchant_id
        self._loop = asyncio.get_running_loop()
        self._prefix = (
            f'{{"merchant_id":"{merchant_id}","campaign_id":"{campaign_id}",'
            f'"variant_id":"{variant_id}","identifiers":['
        ).encode()
        self._max_batch_size, self._max_pending = max_batch_size, max_pending
        self._pending = 0
        self._room = asyncio.Event()
        #: ``deferred``: outcomes wait until intake stalls (back-pressure) or ends.
        self._deferred = deferred
        self._intake_idle = asyncio.Event()
        self._ended = False
        self._index: dict[str, asyncio.Future[Any]] = {}
        self._types: list[str] = []
        self._values: list[str] = []
        self._futures: list[asyncio.Future[Any]] = []
        self._tracker = JobTracker(client, job_timeout=None)
        self._sending: set[asyncio.Task[None]] = set()

    async def submit(self, identifier: str) -> asyncio.Future[Any]:
        type_, value = normalise(identifier)  # raises InvalidIdentifierError
        known = self._index.get(value)
        if known is not None:  # dedupe: a later caller shares the first one's outcome
            future = self._loop.create_future()
            known.add_done_callback(lambda done: future.set_result(done.result()))
            return future
        while self._pending >= self._max_pending:
            self._room.clear()
            self._intake_idle.set()
            await self._room.wait()
        self._pending += 1
        future = self._loop.create_future()
        self._index[value] = future
        self._types.append(type_)
        self._values.append(value)
        self._futures.append(future)
        if len(self._futures) >= self._max_batch_size:
            self._seal()
        return future

    async def flush(self) -> None:
        self._ended = True
        self._intake_idle.set()
        if self._futures:
            self._seal()
        await asyncio.gather(*self._sending)

    async def aclose(self) -> None:
        await self.flush()
        await self._tracker.aclose()

    def _seal(self) -> None:
        batch = (self._types, self._values, self._futures)
        self._types, self._values, self._futures = [], [], []
        task = self._loop.create_task(self._issue(*batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _issue(
        self, types: list[str], values: list[str], futures: list[asyncio.Future[Any]]
    ) -> None:
        body = (
            self._prefix
            + ",".join(
                [f'{{"type":"{t}","value":"{v}"}}' for t, v in zip(types, values, strict=True)]
            ).encode()
            + b"]}"
        )
        key = hashlib.sha256(body).hexdigest()
        try:
            job = await self._client.issue_rewards_raw(body, key)
            job = await self._tracker.track(job, merchant_id=self._merchant)
        except Exception as exc:  # noqa: BLE001 - every caller learns why
            for value, future in zip(values, futures, strict=True):
                del self._index[value]
                future.set_exception(exc)
            self._release(len(futures))
            return
        while self._deferred and not self._intake_idle.is_set():
            await self._intake_idle.wait()
        verdict = JobVerdict.of(job, len(futures))
        # JobVerdict.outcomes() inlined over the parallel lists: the floor has no
        # entry objects for it to read, and building them would cost more.
        set_type, set_value = _IDENTIFIER_SETTERS
        set_identifier, set_status, set_job_id, set_error, set_job, set_dedupe_key = (
            _OUTCOME_SETTERS
        )
        listed, failed = verdict.listed, ta.OutcomeStatus.FAILED
        status, error, job_id = verdict.default_status, verdict.default_error, job.id
        index = self._index
        for position, (type_, value, future) in enumerate(zip(types, values, futures, strict=True)):
            identifier = _new(ta.Identifier)
            set_type(identifier, type_)
            set_value(identifier, value)
            outcome = _new(ta.IssuanceOutcome)
            set_identifier(outcome, identifier)
            reason = listed.get(position) if listed else None
            if reason is None:
                set_status(outcome, status)
                set_error(outcome, error)
            else:
                set_status(outcome, failed)
                set_error(outcome, reason)
            set_job_id(outcome, job_id)
            set_job(outcome, job)
            set_dedupe_key(outcome, None)
            del index[value]
            future.set_result(outcome)
        self._release(len(futures))

    def _release(self, count: int) -> None:
        self._pending -= count
        self._room.set()
        if not self._ended:  # the producer goes on: the other outcomes wait again
            self._intake_idle.clear()
