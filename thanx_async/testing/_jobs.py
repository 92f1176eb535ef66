"""Issuance jobs whose whole lifecycle is a function of the clock.

A job never runs a task: its state, progress and counters are computed from
the time it was created, the start delay and the processing speed whenever
it is read. That keeps thousands of jobs free and lets tests move time by
hand.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable
from typing import Any, Final

import attrs

__all__ = ["Job", "LedgerEntry"]

PENDING: Final = "pending"
PROCESSING: Final = "processing"
COMPLETED: Final = "completed"
FAILED: Final = "failed"
REVOKING: Final = "revoking"
REVOKED: Final = "revoked"

#: The error text of a ``summary.failures`` entry for a user that does not exist.
USER_NOT_FOUND = "User not found"


@attrs.frozen(kw_only=True)
class LedgerEntry:
    """One reward the emulator issued: a successful identifier of a completed job.

    Attributes:
        job_id: the issuance job.
        merchant_id: the merchant of the job.
        campaign_id: the campaign of the job.
        variant_id: the variant of the job.
        identifier_type: ``"email"`` or ``"phone"``.
        identifier_value: the value exactly as it was sent.
        identifier_index: its position in the job's ``identifiers`` array.
        revoked: whether the job has reached ``revoked`` by the clock.
    """

    job_id: str
    merchant_id: str
    campaign_id: str
    variant_id: str
    identifier_type: str
    identifier_value: str
    identifier_index: int
    revoked: bool


@attrs.define(kw_only=True, eq=False)
class Job:
    """One issuance job, as the emulator tracks it.

    Attributes:
        id: ``job_<hex>``.
        client_id: the credential that created it.
        merchant_id: the merchant it was issued for.
        campaign_id: the campaign.
        variant_id: the variant.
        identifiers: the submitted items (dicts with ``type`` and ``value``), in order.
        created: clock time of creation.
        start_delay: seconds from creation to ``processing``.
        speed: identifiers processed per second (``inf`` or ``<= 0`` finishes at once).
        failing: the job ends ``failed`` instead of ``completed``.
        failed_at: if set, the job ends ``failed`` at this clock time at the latest.
        revoke_at: clock time a revoke was accepted, if any.
        revoke_delay: seconds from ``revoking`` to ``revoked``.
        not_found: predicate(type, value) applied once, lazily, to find failures.
    """

    id: str
    client_id: str
    merchant_id: str
    campaign_id: str
    variant_id: str
    identifiers: list[dict[str, Any]]
    created: float
    start_delay: float
    speed: float
    not_found: Callable[[str, str], bool]
    failing: bool = False
    failed_at: float | None = None
    revoke_at: float | None = None
    revoke_delay: float = 0.0
    _failures: list[int] | None = attrs.field(default=None, init=False)
    _summary: dict[str, Any] | None = attrs.field(default=None, init=False)

    @property
    def total(self) -> int:
        """How many identifiers were submitted."""
        return len(self.identifiers)

    @property
    def started(self) -> float:
        """Clock time the job leaves ``pending``."""
        return self.created + self.start_delay

    @property
    def finished(self) -> float:
        """Clock time the job reaches ``completed`` or ``failed``."""
        duration = 0.0 if self.speed <= 0 or math.isinf(self.speed) else self.total / self.speed
        end = self.started + duration
        return end if self.failed_at is None else min(end, self.failed_at)

    @property
    def ends_failed(self) -> bool:
        """Whether the job ends ``failed`` rather than ``completed``."""
        return self.failing or self.failed_at is not None

    def state_at(self, now: float) -> str:
        """The job's state at clock time ``now``."""
        if self.revoke_at is not None:
            return REVOKED if now >= self.revoke_at + self.revoke_delay else REVOKING
        if now >= self.finished:
            return FAILED if self.ends_failed else COMPLETED
        return PENDING if now < self.started else PROCESSING

    def issued_by(self, now: float) -> bool:
        """Whether the job's rewards exist at ``now`` (completed, possibly revoked since)."""
        return not self.ends_failed and now >= self.finished

    def failures(self) -> list[int]:
        """Sorted indices of the identifiers whose user is not found (computed once)."""
        if self._failures is None:
            not_found = self.not_found
            self._failures = [
                index
                for index, item in enumerate(self.identifiers)
                if not_found(item["type"], item["value"])
            ]
        return self._failures

    def to_json(
        self, now: float, iso: Callable[[float], str], *, as_created: bool = False
    ) -> dict[str, Any]:
        """The ``IssuanceJob`` object as the API shows it at ``now``.

        ``as_created`` renders it ``pending`` whatever the timing: the 202 that
        creates a job always shows it pending, even with no start delay.
        """
        state = PENDING if as_created else self.state_at(now)
        total = self.total
        started_at: str | None = None
        completed_at: str | None = None
        summary: dict[str, Any] | None = None
        if state == PENDING:
            processed = successes = failed = 0
        elif state == PROCESSING:
            processed = min(total - 1, int((now - self.started) * self.speed))
            failed = bisect_left(self.failures(), processed)
            successes = processed - failed
        elif self.ends_failed:
            # A failed job issued nothing: every identifier counts as failed.
            processed, successes, failed = total, 0, total
        else:
            summary = self.summary()
            processed, failed = total, summary["failure_count"]
            successes = total - failed
        if state != PENDING and self.started <= self.finished:
            started_at = iso(self.started)
        if state not in (PENDING, PROCESSING):
            completed_at = iso(self.finished)
        job: dict[str, Any] = {
            "id": self.id,
            "campaign_id": self.campaign_id,
            "variant_id": self.variant_id,
            "state": state,
            "total_count": total,
            "processed_count": processed,
            "success_count": successes,
            "failure_count": failed,
            "progress_percent": processed * 100 // total,
            "created_at": iso(self.created),
            "started_at": started_at,
            "completed_at": completed_at,
        }
        if summary is not None:
            job["summary"] = summary
        return job

    def summary(self) -> dict[str, Any]:
        """The ``summary`` object of a completed job (built once, then cached)."""
        if self._summary is None:
            items = self.identifiers
            failures = self.failures()
            self._summary = {
                "success_count": self.total - len(failures),
                "failure_count": len(failures),
                "failures": [
                    {
                        "identifier_index": index,
                        "identifier_type": items[index]["type"],
                        "error": USER_NOT_FOUND,
                    }
                    for index in failures
                ],
            }
        return self._summary

    def issued_items(self, now: float) -> list[tuple[int, dict[str, Any]]]:
        """``(index, item)`` of every identifier rewarded, as of ``now`` (none unless completed)."""
        if not self.issued_by(now):
            return []
        skip = set(self.failures())
        return [(index, item) for index, item in enumerate(self.identifiers) if index not in skip]

    def ledger(self, now: float) -> list[LedgerEntry]:
        """The rewards this job issued, as of ``now`` (empty unless it completed)."""
        revoked = self.state_at(now) == REVOKED
        return [
            LedgerEntry(
                job_id=self.id,
                merchant_id=self.merchant_id,
                campaign_id=self.campaign_id,
                variant_id=self.variant_id,
                identifier_type=item["type"],
                identifier_value=item["value"],
                identifier_index=index,
                revoked=revoked,
            )
            for index, item in self.issued_items(now)
        ]
