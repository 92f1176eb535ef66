"""thanx_async: an asyncio SDK for issuing Thanx rewards.

Callers hand over one identifier at a time; the SDK batches them, sends each
batch once with a deterministic idempotency key, stays inside Thanx's rate
limits, follows each issuance job and resolves one future per identifier.

Example:
    >>> import thanx_async as ta
    >>> ta.Identifier.parse("Jane@Example.com").value
    'jane@example.com'
"""

# Names are imported on first use (PEP 562), so importing the package (which
# pytest does for every run through our plugin) stays cheap.

from __future__ import annotations

from typing import TYPE_CHECKING

from thanx_async._lazy import lazy_namespace
from thanx_async._version import __version__

if TYPE_CHECKING:
    from thanx_async._batcher import BatcherStats, RewardBatcher
    from thanx_async._client import ThanxClient
    from thanx_async._config import PRODUCTION_URL, SANDBOX_URL, RateLimit, RetryPolicy
    from thanx_async._errors import (
        APIError,
        AuthenticationError,
        BadRequestError,
        BatcherClosedError,
        IdempotencyConflictError,
        InvalidIdentifierError,
        JobFailedError,
        JobTimeoutError,
        JournalError,
        MalformedResponseError,
        NotFoundError,
        PermissionDeniedError,
        RateLimitError,
        ServerError,
        ThanxError,
        TransportError,
        UnprocessableEntityError,
    )
    from thanx_async._identifiers import Identifier, idempotency_key
    from thanx_async._journal import Journal
    from thanx_async._models import (
        Campaign,
        IssuanceFailure,
        IssuanceJob,
        IssuanceSummary,
        JobState,
        Pagination,
        Variant,
    )
    from thanx_async._outcomes import IssuanceOutcome, OutcomeStatus

_EXPORTS = {
    "APIError": "thanx_async._errors",
    "AuthenticationError": "thanx_async._errors",
    "BadRequestError": "thanx_async._errors",
    "BatcherClosedError": "thanx_async._errors",
    "BatcherStats": "thanx_async._batcher",
    "Campaign": "thanx_async._models",
    "IdempotencyConflictError": "thanx_async._errors",
    "Identifier": "thanx_async._identifiers",
    "InvalidIdentifierError": "thanx_async._errors",
    "IssuanceFailure": "thanx_async._models",
    "IssuanceJob": "thanx_async._models",
    "IssuanceOutcome": "thanx_async._outcomes",
    "IssuanceSummary": "thanx_async._models",
    "JobFailedError": "thanx_async._errors",
    "JobState": "thanx_async._models",
    "JobTimeoutError": "thanx_async._errors",
    "Journal": "thanx_async._journal",
    "JournalError": "thanx_async._errors",
    "MalformedResponseError": "thanx_async._errors",
    "NotFoundError": "thanx_async._errors",
    "OutcomeStatus": "thanx_async._outcomes",
    "PRODUCTION_URL": "thanx_async._config",
    "Pagination": "thanx_async._models",
    "PermissionDeniedError": "thanx_async._errors",
    "RateLimit": "thanx_async._config",
    "RateLimitError": "thanx_async._errors",
    "RetryPolicy": "thanx_async._config",
    "RewardBatcher": "thanx_async._batcher",
    "SANDBOX_URL": "thanx_async._config",
    "ServerError": "thanx_async._errors",
    "ThanxClient": "thanx_async._client",
    "ThanxError": "thanx_async._errors",
    "TransportError": "thanx_async._errors",
    "UnprocessableEntityError": "thanx_async._errors",
    "Variant": "thanx_async._models",
    "idempotency_key": "thanx_async._identifiers",
}

__all__ = [
    "PRODUCTION_URL",
    "SANDBOX_URL",
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "BatcherClosedError",
    "BatcherStats",
    "Campaign",
    "IdempotencyConflictError",
    "Identifier",
    "InvalidIdentifierError",
    "IssuanceFailure",
    "IssuanceJob",
    "IssuanceOutcome",
    "IssuanceSummary",
    "JobFailedError",
    "JobState",
    "JobTimeoutError",
    "Journal",
    "JournalError",
    "MalformedResponseError",
    "NotFoundError",
    "OutcomeStatus",
    "Pagination",
    "PermissionDeniedError",
    "RateLimit",
    "RateLimitError",
    "RetryPolicy",
    "RewardBatcher",
    "ServerError",
    "ThanxClient",
    "ThanxError",
    "TransportError",
    "UnprocessableEntityError",
    "Variant",
    "__version__",
    "idempotency_key",
]


__getattr__, __dir__ = lazy_namespace(__name__, _EXPORTS, __all__, globals())
