"""What happened to one person: IssuanceOutcome, and the rules that decide it."""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import attrs

from thanx_async._identifiers import Identifier, IdentifierType
from thanx_async._models import IssuanceJob, JobState

__all__ = ["IssuanceOutcome", "JobVerdict", "OutcomeStatus", "Person"]


class OutcomeStatus(enum.StrEnum):
    """The result for one identifier.

    ``ISSUED``: the job completed, its counts account for every identifier of
    the batch, and it did not list this one as failed.
    ``FAILED``: the server named this identifier as failed (``error`` says why).
    ``UNKNOWN``: the server's answer does not tell (more failures reported than
    listed, counts that do not cover the batch, an unreadable answer, a revoked
    job); ``error`` says which. The reward may or may not have been issued.
    """

    ISSUED = "issued"
    FAILED = "failed"
    UNKNOWN = "unknown"


@attrs.frozen(kw_only=True, slots=True)
class IssuanceOutcome:
    """The outcome of one submitted identifier.

    Attributes:
        identifier: the normalised identifier.
        status: ISSUED, FAILED or UNKNOWN.
        job_id: the issuance job that carried it (None if rejected before any job).
        error: the server's explanation for FAILED / UNKNOWN, else None.
        job: the job in its final state (None if rejected before any job).
        dedupe_key: the dedupe key it was submitted with.
    """

    identifier: Identifier
    status: OutcomeStatus
    job_id: str | None = None
    error: str | None = None
    job: IssuanceJob | None = attrs.field(default=None, repr=False)
    dedupe_key: str | None = None

    @property
    def issued(self) -> bool:
        """Whether the person got the reward."""
        return self.status is OutcomeStatus.ISSUED


class Person(Protocol):
    """Who an outcome is for: a normalised identifier and its dedupe key (a batch entry)."""

    @property
    def type(self) -> IdentifierType: ...

    @property
    def value(self) -> str: ...

    @property
    def dedupe_key(self) -> str | None: ...


def _slot_setters(cls: type, *names: str) -> tuple[Callable[[Any, Any], None], ...]:
    return tuple(cls.__dict__[name].__set__ for name in names)


# Outcomes are built by filling the slots of a bare instance: equal in every way
# to IssuanceOutcome(identifier=Identifier(...), ...) (a test checks), at about
# 40% of the cost of attrs' frozen keyword __init__, which was a measurable
# share of resolving a 10,000-identifier batch.
_new = object.__new__
_IDENTIFIER_SETTERS = _slot_setters(Identifier, "type", "value")
_OUTCOME_SETTERS = _slot_setters(
    IssuanceOutcome, "identifier", "status", "job_id", "error", "job", "dedupe_key"
)


_UNLISTED = "the job reported more failures than it listed; this identifier may have failed"
_REVOKED = "the job was revoked before its outcome was read"


@attrs.frozen
class JobVerdict:
    """How a terminal job decides each identifier's status, by position in the batch.

    Kept apart from building outcomes so a 10,000-identifier batch can be
    resolved slice by slice without stalling the event loop.
    """

    job: IssuanceJob
    listed: dict[int, str]
    default_status: OutcomeStatus
    default_error: str | None

    @classmethod
    def of(cls, job: IssuanceJob, size: int) -> JobVerdict:
        """The verdict of a job that ended (not ``failed``) over a batch of ``size``.

        ``ISSUED`` needs evidence (DESIGN.md, Outcomes): the job ``completed``,
        every part of the answer was readable, and its counts account for the
        whole batch (``total_count`` is the batch's size, success and failure
        counts are non-negative and add up to it, the summary agrees with the
        top-level counts, every listed failure names a position of the batch).
        Then listed failures are ``FAILED`` with the server's text and the
        others ``ISSUED`` — or ``UNKNOWN`` when the job reported more failures
        than it listed. Without that evidence, listed failures are still
        ``FAILED`` and everyone else is ``UNKNOWN``, with the reason. A revoked
        job, or one whose end was never read, makes everyone ``UNKNOWN``.
        """
        if job.unreadable is not None:
            reason = f"job {job.id}'s outcome could not be read: {job.unreadable}"
            return cls(job, {}, OutcomeStatus.UNKNOWN, reason)
        if job.state is JobState.REVOKED:
            return cls(job, {}, OutcomeStatus.UNKNOWN, _REVOKED)
        if job.state is not JobState.COMPLETED:
            reason = f"job {job.id} was last seen {job.state.value}; its end was never read"
            return cls(job, {}, OutcomeStatus.UNKNOWN, reason)
        listed: dict[int, str] = {}
        stray = False
        successes, failures = job.success_count, job.failure_count
        summary = job.summary
        if summary is not None:
            # Top-level counts of 0 next to a summary are taken as "not filled in".
            if (successes and successes != summary.success_count) or (
                failures and failures != summary.failure_count
            ):
                stray = True
            successes, failures = summary.success_count, summary.failure_count
            for failure in summary.failures:
                if 0 <= failure.identifier_index < size:
                    listed[failure.identifier_index] = failure.error or "failed"
                else:
                    stray = True
        consistent = (
            not stray
            and job.total_count == size
            and successes >= 0
            and failures >= len(listed)
            and successes + failures == size
        )
        if not consistent:
            reason = (
                f"job {job.id}'s counts (total {job.total_count}, {successes} issued, "
                f"{failures} failed) do not account for the batch of {size}"
            )
            return cls(job, listed, OutcomeStatus.UNKNOWN, reason)
        if failures > len(listed):
            return cls(job, listed, OutcomeStatus.UNKNOWN, _UNLISTED)
        return cls(job, listed, OutcomeStatus.ISSUED, None)

    def outcomes(self, start: int, people: Sequence[Person]) -> list[IssuanceOutcome]:
        """The outcomes of a run of the batch's identifiers, the first at position ``start``."""
        set_type, set_value = _IDENTIFIER_SETTERS
        set_identifier, set_status, set_job_id, set_error, set_job, set_dedupe_key = (
            _OUTCOME_SETTERS
        )
        job, listed, failed = self.job, self.listed, OutcomeStatus.FAILED
        status, error = self.default_status, self.default_error
        out: list[IssuanceOutcome] = []
        for index, person in enumerate(people, start):
            identifier = _new(Identifier)
            set_type(identifier, person.type)
            set_value(identifier, person.value)
            outcome = _new(IssuanceOutcome)
            set_identifier(outcome, identifier)
            reason = listed.get(index) if listed else None
            if reason is None:
                set_status(outcome, status)
                set_error(outcome, error)
            else:
                set_status(outcome, failed)
                set_error(outcome, reason)
            set_job_id(outcome, job.id)
            set_job(outcome, job)
            set_dedupe_key(outcome, person.dedupe_key)
            out.append(outcome)
        return out
