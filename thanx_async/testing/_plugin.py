"""pytest plugin (entry point ``pytest11``): the ``thanx_emulator`` and ``thanx_client`` fixtures.

Every pytest run in an environment with thanx-async installed imports this
module, so it imports nothing heavy at module level (the emulator and the
client are imported inside the fixtures) and it does not require
pytest-asyncio: without it, the fixtures exist but fail with a clear message.

Example:
    >>> @pytest.mark.thanx_emulator(start_delay=0.0, speed=float("inf"))
    ... async def test_issue(thanx_client, thanx_emulator):
    ...     job = await thanx_client.issue_rewards(...)
    ...     assert thanx_emulator.state.requests_for("issue")

Webhooks: ``@pytest.mark.thanx_emulator(webhook_url=..., webhook_secret=...)``, or
set ``thanx_emulator.state.webhooks.url`` once the receiver's port is known.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

if TYPE_CHECKING:
    from thanx_async import RateLimit, ThanxClient
    from thanx_async.testing._server import ThanxEmulator
    from thanx_async.testing._state import EmulatorState

try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - exercised only without pytest-asyncio
    _HAS_PYTEST_ASYNCIO = False
else:
    _HAS_PYTEST_ASYNCIO = True

MARKER = "thanx_emulator"
_NEEDS_ASYNCIO = (
    "the thanx_emulator and thanx_client fixtures need pytest-asyncio (pip install pytest-asyncio)"
)
# A budget so large it never binds, for emulator windows that are switched off.
_UNLIMITED = 1_000_000_000


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``thanx_emulator`` marker (``--strict-markers`` safe)."""
    config.addinivalue_line(
        "markers",
        f"{MARKER}(**options): EmulatorState options for the thanx_emulator fixture, "
        "e.g. speed=..., start_delay=..., rate_limit_per_second=..., timespec='milliseconds', "
        "webhook_url=..., webhook_secret=..., webhook_faults=[...]",
    )


def emulator_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The keyword arguments of every ``thanx_emulator`` marker; the closest one wins."""
    options: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers(MARKER))):
        if marker.args:
            raise pytest.UsageError(f"@pytest.mark.{MARKER} takes keyword arguments only")
        options.update(marker.kwargs)
    return options


def client_rate_limit(state: EmulatorState) -> RateLimit:
    """A client budget matching the emulator's windows (huge where a window is off)."""
    from thanx_async import RateLimit  # noqa: PLC0415 - keep plugin import cheap

    return RateLimit(
        per_second=state.rate_limit_per_second or _UNLIMITED,
        second=state.rate_limit_second or 1.0,
        per_window=state.rate_limit_per_window or _UNLIMITED,
        window=state.rate_limit_window or 900.0,
    )


if _HAS_PYTEST_ASYNCIO:

    @pytest_asyncio.fixture
    async def thanx_emulator(request: pytest.FixtureRequest) -> AsyncIterator[ThanxEmulator]:
        """A running emulator with default options (or those of the ``thanx_emulator`` marker)."""
        from thanx_async.testing._server import ThanxEmulator  # noqa: PLC0415 - cheap import

        async with ThanxEmulator(**emulator_options(request)) as emulator:
            yield emulator

    @pytest_asyncio.fixture
    async def thanx_client(thanx_emulator: ThanxEmulator) -> AsyncIterator[ThanxClient]:
        """A ``ThanxClient`` for ``thanx_emulator`` with the default credential, closed after."""
        from thanx_async import ThanxClient  # noqa: PLC0415 - keep plugin import cheap
        from thanx_async.testing._records import (  # noqa: PLC0415
            DEFAULT_ACCESS_TOKEN,
            DEFAULT_CLIENT_ID,
        )

        client = ThanxClient(
            client_id=DEFAULT_CLIENT_ID,
            access_token=DEFAULT_ACCESS_TOKEN,
            base_url=thanx_emulator.url,
            rate_limit=client_rate_limit(thanx_emulator.state),
        )
        async with client:
            yield client

else:  # pragma: no cover - exercised only without pytest-asyncio

    @pytest.fixture
    def thanx_emulator() -> NoReturn:
        """Unavailable: needs pytest-asyncio."""
        pytest.fail(_NEEDS_ASYNCIO, pytrace=False)

    @pytest.fixture
    def thanx_client() -> NoReturn:
        """Unavailable: needs pytest-asyncio."""
        pytest.fail(_NEEDS_ASYNCIO, pytrace=False)
