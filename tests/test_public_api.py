"""The public surface: exactly the names in __all__, sorted, importable."""

from __future__ import annotations

import thanx_async as ta


def test_all_is_exactly_the_public_names() -> None:
    """__all__ lists exactly the public names the package exposes (ruff RUF022 keeps it sorted)."""
    # "@py..." names are pytest's assertion rewriting (the package is a pytest plugin).
    public = {n for n in dir(ta) if not n.startswith(("_", "@"))} | {"__version__"}
    # Submodules imported as a side effect are not API.
    public -= {"testing"}
    assert len(set(ta.__all__)) == len(ta.__all__)
    assert set(ta.__all__) == public


def test_contract_names_exist() -> None:
    """The names DESIGN.md makes binding are exported."""
    for name in [
        "ThanxClient", "RateLimit", "RetryPolicy", "Identifier", "idempotency_key",
        "IssuanceJob", "JobState", "SANDBOX_URL", "PRODUCTION_URL", "ThanxError",
        "InvalidIdentifierError", "APIError", "AuthenticationError", "PermissionDeniedError",
        "NotFoundError", "IdempotencyConflictError", "UnprocessableEntityError",
        "RateLimitError", "ServerError", "TransportError", "JobFailedError",
        "JobTimeoutError", "BatcherClosedError",
    ]:  # fmt: skip
        assert hasattr(ta, name), name
