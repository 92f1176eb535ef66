"""thanx_async: an asyncio SDK for issuing Thanx rewards.

Callers hand over one identifier at a time; the SDK batches them, sends each
batch once with a deterministic idempotency key, stays inside Thanx's rate
limits, follows each issuance job and resolves one future per identifier.

Example:
    >>> import thanx_async as ta
    >>> ta.Identifier.parse("Jane@Example.com").value
    'jane@example.com'
"""

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
from thanx_async._version import __version__

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
