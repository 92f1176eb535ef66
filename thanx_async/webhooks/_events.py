"""The typed webhook events: what :func:`parse_event` returns.

How a body becomes one of these (and which fields are checked strictly) is
in ``_decode``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar, TypeAlias

import attrs

from thanx_async._errors import InvalidIdentifierError
from thanx_async._identifiers import Identifier
from thanx_async._models import Campaign, JobState, Variant

__all__ = [
    "BatchFailure",
    "RewardBatchCompleted",
    "RewardIssued",
    "UnknownEvent",
    "WebhookEvent",
]


@attrs.frozen(kw_only=True)
class BatchFailure:
    """One identifier a job could not reward, as ``reward_batch.completed`` names it.

    Unlike a polled job's ``summary.failures`` (which give a position), a
    webhook names the identifier **value** that was sent.

    Attributes:
        user_identifier: the email or phone as Thanx echoes it.
        reason: the server's explanation, e.g. ``"User not found"``.
    """

    user_identifier: str
    reason: str | None = None

    @property
    def identifier(self) -> Identifier | None:
        """``user_identifier`` validated and normalised; ``None`` if neither an email nor a phone.

        Normalising both sides (``Jane@Example.com`` and ``jane@example.com``
        are the same person) is how a failure is matched to what was sent.
        """
        try:
            return Identifier.parse(self.user_identifier)
        except InvalidIdentifierError:
            return None


@attrs.frozen(kw_only=True)
class RewardBatchCompleted:
    """``reward_batch.completed``: one issuance job has finished (sent once per job).

    Attributes:
        issuance_job_id: the job that finished.
        state: ``completed`` or ``failed`` (an unknown value keeps its raw string).
        merchant_id: the job's merchant, if the delivery says.
        total_count: identifiers in the job.
        issued_count: rewards issued (the job's ``success_count``).
        failed_count: identifiers not rewarded (the job's ``failure_count``).
        failures: the identifiers not rewarded, **by value**, with the reason.
        timestamp: when the event happened, if given and readable.
        data: the raw ``data`` object of the delivery.
    """

    event: ClassVar[str] = "reward_batch.completed"

    issuance_job_id: str
    state: JobState
    merchant_id: str | None = None
    total_count: int | None = None
    issued_count: int | None = None
    failed_count: int | None = None
    failures: tuple[BatchFailure, ...] = attrs.field(default=(), repr=False)
    timestamp: datetime | None = None
    data: Mapping[str, Any] = attrs.field(factory=dict, repr=False, eq=False)


@attrs.frozen(kw_only=True)
class RewardIssued:
    """``reward.issued``: one reward was issued (one delivery per reward: 10,000 for a full job).

    The identifier is named by its **position** in the job's request, not its value.

    Attributes:
        issuance_job_id: the job that issued it.
        merchant_id: the job's merchant, if the delivery says.
        reward_id: the reward's id.
        identifier_type: ``"email"`` or ``"phone"``.
        identifier_index: the identifier's position in the job's ``identifiers``.
        user_id: the Thanx user rewarded.
        state: the reward's state (``active``, ``pending``, ``delivered``...).
        expires_at: when the reward expires, if it does.
        campaign: the campaign, its one variant in ``campaign.variants``
            (``None`` when absent or unreadable; the raw object stays in ``data``).
        timestamp: when the event happened, if given and readable.
        data: the raw ``data`` object of the delivery.
    """

    event: ClassVar[str] = "reward.issued"

    issuance_job_id: str
    merchant_id: str | None = None
    reward_id: str | None = None
    identifier_type: str | None = None
    identifier_index: int | None = None
    user_id: str | None = None
    state: str | None = None
    expires_at: datetime | None = None
    campaign: Campaign | None = None
    timestamp: datetime | None = None
    data: Mapping[str, Any] = attrs.field(factory=dict, repr=False, eq=False)

    @property
    def variant(self) -> Variant | None:
        """The campaign variant the reward was issued for, if the delivery says."""
        if self.campaign is None or not self.campaign.variants:
            return None
        return self.campaign.variants[0]


@attrs.frozen(kw_only=True)
class UnknownEvent:
    """A correctly signed delivery of an event this SDK does not know, kept as it came.

    Attributes:
        event: the event name.
        timestamp: when the event happened, if given and readable.
        data: the raw ``data`` value (any JSON value, ``None`` if absent).
    """

    event: str
    timestamp: datetime | None = None
    data: Any = attrs.field(default=None, repr=False)


#: What :func:`parse_event` returns.
WebhookEvent: TypeAlias = RewardBatchCompleted | RewardIssued | UnknownEvent
