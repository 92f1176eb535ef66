"""The public surface: exactly the names in __all__, importable, and cheap to import."""

from __future__ import annotations

import subprocess
import sys
from types import ModuleType

import pytest

import thanx_async as ta
from thanx_async import testing


@pytest.mark.parametrize("package", [ta, testing])
def test_all_is_exactly_the_public_names(package: ModuleType) -> None:
    """__all__ lists exactly the exported names, each resolves (ruff RUF022 keeps it sorted)."""
    assert len(set(package.__all__)) == len(package.__all__)
    assert set(package.__all__) - {"__version__"} == set(package._EXPORTS)
    for name in package.__all__:
        assert getattr(package, name) is not None
    # "@py..." names are pytest's assertion rewriting (the package is a pytest plugin).
    public = {n for n in dir(package) if not n.startswith(("_", "@"))}
    assert public - {"testing"} == set(package.__all__) - {"__version__"}


def test_unknown_name_is_an_attribute_error() -> None:
    """A name that is not exported raises AttributeError, as for any module."""
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = ta.Nope


def test_contract_names_exist() -> None:
    """The names DESIGN.md makes binding are exported."""
    for name in [
        "ThanxClient", "RateLimit", "RetryPolicy", "Identifier", "idempotency_key",
        "IssuanceJob", "JobState", "SANDBOX_URL", "PRODUCTION_URL", "ThanxError",
        "InvalidIdentifierError", "APIError", "AuthenticationError", "PermissionDeniedError",
        "NotFoundError", "IdempotencyConflictError", "UnprocessableEntityError",
        "RateLimitError", "ServerError", "TransportError", "JobFailedError",
        "JobTimeoutError", "BatcherClosedError", "RewardBatcher", "IssuanceOutcome",
        "OutcomeStatus",
    ]:  # fmt: skip
        assert hasattr(ta, name), name


def test_importing_the_plugin_does_not_load_the_sdk() -> None:
    """Pytest loads our plugin in every run: it must not import aiohttp or the client."""
    code = (
        "import sys, thanx_async.testing._plugin; "
        "print(sorted(m for m in ('aiohttp', 'thanx_async._client') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
