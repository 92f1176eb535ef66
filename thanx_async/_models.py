"""Value objects for what the Thanx API returns.

All models are frozen attrs classes. Parsing is tolerant: unknown JSON keys are
ignored, optional fields default, an unknown job state keeps its raw string.
"""

from __future__ import annotations

import enum
from datetime import datetime

import attrs

__all__ = [
    "Campaign",
    "IssuanceFailure",
    "IssuanceJob",
    "IssuanceSummary",
    "JobState",
    "Pagination",
    "Variant",
]


class JobState(enum.StrEnum):
    """The state of an issuance job.

    A value the server invents later does not crash parsing: it becomes a
    pseudo-member whose ``value`` is the raw string and whose ``known`` is False.

    Example:
        >>> JobState("completed").is_terminal
        True
        >>> JobState("archived").value, JobState("archived").known
        ('archived', False)
    """

    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    REVOKING = "revoking"
    REVOKED = "revoked"

    @classmethod
    def _missing_(cls, value: object) -> JobState:
        # Keep the raw value: a new server state must never break a poll.
        member = str.__new__(cls, str(value))  # StrEnum members are str instances
        member._name_ = f"UNKNOWN_{value}"
        member._value_ = str(value)
        return member

    @property
    def known(self) -> bool:
        """Whether this state is one the SDK knows."""
        return self._name_ in type(self).__members__

    @property
    def is_terminal(self) -> bool:
        """Whether the job will not change by itself any more (``wait_for_job`` stops here)."""
        return self in _TERMINAL


_TERMINAL = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.REVOKED})


@attrs.frozen(kw_only=True)
class IssuanceFailure:
    """One identifier the job could not issue to.

    Attributes:
        identifier_index: position in the submitted ``identifiers`` array.
        identifier_type: ``email`` or ``phone``.
        error: the server's human explanation, e.g. "User not found".
    """

    identifier_index: int
    identifier_type: str | None = None
    error: str | None = None


@attrs.frozen(kw_only=True)
class IssuanceSummary:
    """The result of a completed job."""

    success_count: int = 0
    failure_count: int = 0
    failures: tuple[IssuanceFailure, ...] = ()


@attrs.frozen(kw_only=True)
class IssuanceJob:
    """An issuance job: one POST of identifiers being turned into rewards.

    Attributes:
        id: the job id.
        state: the job state (tolerant of unknown values).
        summary: present only once the job is ``completed``.
        progress_percent: 0..100, as reported by the server.
        unreadable: what part of the server's answer could not be read (a
            count or a summary of the wrong type, say), or None. The job's
            ``id`` and ``state`` were readable; the unreadable fields took
            their defaults, so no outcome is derived from them: every
            identifier of such a job resolves ``UNKNOWN``.
    """

    id: str
    state: JobState
    campaign_id: str | None = None
    variant_id: str | None = None
    total_count: int = 0
    processed_count: int = 0
    success_count: int = 0
    failure_count: int = 0
    progress_percent: int = 0
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    summary: IssuanceSummary | None = None
    unreadable: str | None = None

    @property
    def is_terminal(self) -> bool:
        """Whether the job has reached ``completed``, ``failed`` or ``revoked``."""
        return self.state.is_terminal


@attrs.frozen(kw_only=True)
class Variant:
    """A variant of a campaign; ``reward_template_id`` is None for a control variant."""

    id: str
    name: str | None = None
    reward_template_id: str | None = None


@attrs.frozen(kw_only=True)
class Campaign:
    """A campaign and its variants."""

    id: str
    name: str | None = None
    objective: str | None = None
    fine_print: str | None = None
    start_at: datetime | None = None
    end_at: datetime | None = None
    redeemable_from: datetime | None = None
    redeemable_to: datetime | None = None
    time_zone: str | None = None
    variants: tuple[Variant, ...] = ()


@attrs.frozen(kw_only=True)
class Pagination:
    """Where a page of a listing stands."""

    current_page: int = 1
    per_page: int = 10
    total_pages: int = 1
