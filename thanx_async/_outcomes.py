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

    ``ISSUED``: the job completed and did not list this identifier as failed.
    ``FAILED``: the server named this identifier as failed (``error`` says why).
    ``UNKNOWN``: the job reported more failures than it listed, so we cannot
    tell whether this identifier was among them.
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
        """The verdict of a ``completed`` (or ``revoked``) job over a batch of ``size``.

        Failures are matched by ``identifier_index``; when the job's failure
        count exceeds the failures it lists (or it has no summary but failures),
        every unlisted identifier is UNKNOWN. A ``revoked`` job makes everyone
        UNKNOWN.
        """
        if job.state is JobState.REVOKED:
            return cls(job, {}, OutcomeStatus.UNKNOWN, _REVOKED)
        listed: dict[int, str] = {}
        failure_count = job.failure_count
        if job.summary is not None:
            failure_count = max(failure_count, job.summary.failure_count)
            for failure in job.summary.failures:
                if 0 <= failure.identifier_index < size:
                    listed[failure.identifier_index] = failure.error or "failed"
        if failure_count > len(listed):
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
