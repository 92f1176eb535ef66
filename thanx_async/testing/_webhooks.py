"""Webhook deliveries the emulator owes: which are due, their signed bodies, faults and records.

No HTTP here (the sender in ``_webhook_sender`` posts them). Jobs have no
task of their own, so the outbox notices a job has ended when it is asked
(:meth:`WebhookOutbox.collect`, called by the emulator's sender every few
milliseconds, or by :meth:`ThanxEmulator.deliver_webhooks`) and plans what
Thanx would send for it:

- one ``reward.issued`` per rewarded identifier (none for a job that ends
  ``failed``), stamped with the moment that identifier was processed;
- one ``reward_batch.completed`` per job, ``completed`` or ``failed``,
  stamped with the job's end. Its ``failures`` name the identifier **value**;
  a failed job lists none (every identifier counts in ``failed_count``).

All are due when the job ends (plus any scripted delay). Bodies are compact
JSON in the documented envelope, signed like Thanx signs them, and rendered
only when first needed (10,000 ``reward.issued`` per full job add up).

Example:
    >>> state = EmulatorState(webhook_url="http://127.0.0.1:8000/webhooks/thanx")
    >>> state.webhooks.faults.add("reward_batch.completed", drop=True)   # lose the next one
    >>> state.webhooks.faults.add("*", duplicate=True, probability=0.1, times=None)
"""

from __future__ import annotations

import functools
import hashlib
import heapq
import itertools
import math
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

import attrs
import orjson

from thanx_async.testing._jobs import USER_NOT_FOUND, Job
from thanx_async.testing._webhook_faults import (
    REWARD_BATCH_COMPLETED,
    REWARD_ISSUED,
    WEBHOOK_EVENTS,
    WebhookFaults,
)
from thanx_async.webhooks._signature import compute_signature

if TYPE_CHECKING:
    from thanx_async.testing._catalog import Campaign
    from thanx_async.testing._state import EmulatorState

__all__ = ["DEFAULT_WEBHOOK_SECRET", "WebhookDelivery", "WebhookOutbox"]

#: The secret deliveries are signed with unless another is configured (a fake, printed freely).
DEFAULT_WEBHOOK_SECRET: Final = "emulator-webhook-secret"  # noqa: S105 - a fixture value


@attrs.define(kw_only=True, eq=False)
class WebhookDelivery:
    """One webhook the emulator planned, and what became of it.

    Attributes:
        event: ``"reward.issued"`` or ``"reward_batch.completed"``.
        job_id: the issuance job it is about.
        url: where it is (or was) posted.
        due_at: clock time it is due (the job's end, plus any delay).
        faults: the faults applied: ``"drop"``, ``"delay"``, ``"bad_signature"``,
            ``"duplicate"`` (on the extra copy).
        sent_at: clock time it was posted, ``None`` if not (yet).
        status: the receiver's HTTP status, ``None`` if there was no answer.
        error: why there was no answer (connection refused, timeout...).
    """

    event: str
    job_id: str
    url: str
    due_at: float
    faults: tuple[str, ...] = ()
    sent_at: float | None = None
    status: int | None = None
    error: str | None = None
    _render: Callable[[], bytes] = attrs.field(repr=False, alias="render")
    _secret: str = attrs.field(repr=False, alias="secret")
    _body: bytes | None = attrs.field(default=None, init=False, repr=False)

    @property
    def body(self) -> bytes:
        """The exact bytes posted (compact JSON ``{"event", "timestamp", "data"}``)."""
        if self._body is None:
            self._body = self._render()
        return self._body

    @property
    def payload(self) -> Any:
        """The body, parsed."""
        return orjson.loads(self.body)

    @property
    def signature(self) -> str:
        """The ``X-Thanx-Signature`` sent (of the wrong secret for ``"bad_signature"``)."""
        secret = self._secret
        if "bad_signature" in self.faults:
            secret = f"not-{secret}"
        return compute_signature(self.body, secret)

    @property
    def dropped(self) -> bool:
        """Whether a ``drop`` fault kept it from being sent."""
        return "drop" in self.faults

    @property
    def delivered(self) -> bool:
        """Whether the receiver answered it with a 2xx status."""
        return self.status is not None and 200 <= self.status < 300

    def copy(self) -> WebhookDelivery:
        """An identical delivery (same body and signature) marked ``"duplicate"``."""
        return WebhookDelivery(
            event=self.event,
            job_id=self.job_id,
            url=self.url,
            due_at=self.due_at,
            faults=(*(f for f in self.faults if f != "delay"), "duplicate"),
            render=lambda: self.body,
            secret=self._secret,
        )


class WebhookOutbox:
    """The webhooks an emulator owes, planned from its jobs and its clock (``state.webhooks``).

    Args:
        state: the emulator state whose jobs are watched.
        url: where to post; ``None`` sends nothing. It can be set later: a job
            is delivered if a URL is set when the job ends.
        secret: the webhook secret bodies are signed with.
        events: which events to send (both by default).
        faults: :meth:`WebhookFaults.add` keyword arguments, one mapping per fault.
        seed: seed of the faults' random draws.
    """

    def __init__(
        self,
        state: EmulatorState,
        *,
        url: str | None = None,
        secret: str = DEFAULT_WEBHOOK_SECRET,
        events: Iterable[str] = WEBHOOK_EVENTS,
        faults: Iterable[Mapping[str, Any]] = (),
        seed: int = 0,
    ) -> None:
        if not secret:
            raise ValueError("the webhook secret must not be empty")
        chosen = frozenset(events)
        if not chosen <= set(WEBHOOK_EVENTS):
            raise ValueError(f"unknown webhook events {sorted(chosen - set(WEBHOOK_EVENTS))}")
        self.url = url
        self.secret = secret
        self.events = chosen
        self.faults = WebhookFaults(seed)
        for fault in faults:
            self.faults.add(**fault)
        #: Every delivery planned, in planning order (kept only while the
        #: state logs requests, like :attr:`EmulatorState.requests`).
        self.deliveries: list[WebhookDelivery] = []
        self._state = state
        self._seen = 0
        self._watching: list[Job] = []
        self._due: list[tuple[float, int, WebhookDelivery]] = []
        self._order = itertools.count()

    def for_job(self, job_id: str, event: str | None = None) -> list[WebhookDelivery]:
        """The recorded deliveries about one job (optionally one event), in planning order."""
        return [d for d in self.deliveries if d.job_id == job_id and event in (None, d.event)]

    @property
    def waiting(self) -> int:
        """How many planned deliveries are not due yet (delayed ones)."""
        return len(self._due)

    def collect(self, now: float | None = None) -> list[WebhookDelivery]:
        """Plan the deliveries of jobs that have ended, and return those due, to send in order.

        Each delivery is returned once; dropped ones are recorded, never returned.
        """
        now = self._state.clock() if now is None else now
        self._watch_new_jobs()
        unfinished: list[Job] = []
        for job in self._watching:
            if now >= job.finished:
                self._plan(job)
            else:
                unfinished.append(job)
        self._watching = unfinished
        due: list[WebhookDelivery] = []
        while self._due and self._due[0][0] <= now:
            due.append(heapq.heappop(self._due)[2])
        return due

    def _watch_new_jobs(self) -> None:
        jobs = self._state.jobs
        new = len(jobs) - self._seen
        if new > 0:
            # Jobs are only ever appended: the newest are at the end, read in O(new).
            fresh = list(itertools.islice(reversed(jobs.values()), new))
            self._watching.extend(reversed(fresh))
        self._seen = len(jobs)

    def _plan(self, job: Job) -> None:
        url = self.url
        if url is None:
            return
        campaign = self._state.catalog.campaigns.get(job.campaign_id)
        if REWARD_ISSUED in self.events:
            for index, _ in job.issued_items(job.finished):
                render = functools.partial(self._issued_body, job, index, campaign)
                self._schedule(REWARD_ISSUED, job, url, render)
        if REWARD_BATCH_COMPLETED in self.events:
            render = functools.partial(self._completed_body, job)
            self._schedule(REWARD_BATCH_COMPLETED, job, url, render)

    def _schedule(self, event: str, job: Job, url: str, render: Callable[[], bytes]) -> None:
        fault = self.faults.take(event)
        applied: list[str] = []
        due_at = job.finished
        if fault is not None:
            if fault.drop:
                applied.append("drop")
            if fault.delay is not None:
                applied.append("delay")
                due_at += fault.delay
            if fault.bad_signature:
                applied.append("bad_signature")
        delivery = WebhookDelivery(
            event=event,
            job_id=job.id,
            url=url,
            due_at=due_at,
            faults=tuple(applied),
            render=render,
            secret=self.secret,
        )
        copies = [delivery]
        if fault is not None and fault.duplicate:
            copies.append(delivery.copy())
        for copy in copies:
            if self._state.log_requests:
                self.deliveries.append(copy)
            if not copy.dropped:
                heapq.heappush(self._due, (copy.due_at, next(self._order), copy))

    # -- bodies -----------------------------------------------------------------

    def _envelope(self, event: str, at: float, data: dict[str, Any]) -> bytes:
        return orjson.dumps({"event": event, "timestamp": self._state.iso(at), "data": data})

    def _completed_body(self, job: Job) -> bytes:
        total = job.total
        if job.ends_failed:
            issued, failures = 0, []
        else:
            items = job.identifiers
            failures = [
                {"user_identifier": items[index]["value"], "reason": USER_NOT_FOUND}
                for index in job.failures()
            ]
            issued = total - len(failures)
        data = {
            "issuance_job_id": job.id,
            "merchant_id": job.merchant_id,
            "state": "failed" if job.ends_failed else "completed",
            "total_count": total,
            "issued_count": issued,
            "failed_count": total - issued,
            "failures": failures,
        }
        return self._envelope(REWARD_BATCH_COMPLETED, job.finished, data)

    def _issued_body(self, job: Job, index: int, campaign: Campaign | None) -> bytes:
        item = job.identifiers[index]
        # The moment this identifier was processed: jobs work through them in order.
        at = job.started
        if job.speed > 0 and not math.isinf(job.speed):
            at = min(job.finished, job.started + (index + 1) / job.speed)
        user = hashlib.blake2b(f"{item['type']}:{item['value']}".encode(), digest_size=8)
        data = {
            "issuance_job_id": job.id,
            "merchant_id": job.merchant_id,
            "reward_id": f"rwd_{job.id.removeprefix('job_')}_{index}",
            "identifier": {"type": item["type"], "index": index},
            "user_id": f"usr_{user.hexdigest()}",
            "state": "active",
            "expires_at": campaign.redeemable_to if campaign is not None else None,
            "campaign": _campaign_json(campaign, job.variant_id),
        }
        return self._envelope(REWARD_ISSUED, at, data)


def _campaign_json(campaign: Campaign | None, variant_id: str) -> dict[str, Any] | None:
    if campaign is None:
        return None
    data = campaign.to_json()
    del data["variants"]
    variant = next((v for v in campaign.variants if v.id == variant_id), None)
    data["variant"] = variant.to_json() if variant is not None else None
    return data
