"""Plain records the emulator keeps: credentials and the request log."""

from __future__ import annotations

import attrs

__all__ = [
    "DEFAULT_ACCESS_TOKEN",
    "DEFAULT_CLIENT_ID",
    "READONLY_ACCESS_TOKEN",
    "READONLY_CLIENT_ID",
    "Credential",
    "LoggedRequest",
]

#: The seeded credential with scope ``rewards.issue``.
DEFAULT_CLIENT_ID = "emulator-client"
#: Its token (a fake, printed freely).
DEFAULT_ACCESS_TOKEN = "emulator-token"  # noqa: S105 - a fixture value, not a secret
#: A seeded credential without ``rewards.issue`` (only ``campaigns.read``): every
#: endpoint but ``GET /partner/scopes`` answers it with 403.
READONLY_CLIENT_ID = "emulator-readonly-client"
#: Its token.
READONLY_ACCESS_TOKEN = "emulator-readonly-token"  # noqa: S105 - a fixture value


@attrs.frozen(kw_only=True)
class Credential:
    """A client id, its bearer token and its scopes."""

    client_id: str
    access_token: str = attrs.field(repr=False)
    scopes: tuple[str, ...]


@attrs.frozen(kw_only=True)
class LoggedRequest:
    """One request as the emulator received it, and what it answered.

    Attributes:
        method: HTTP method.
        path: URL path without the query string.
        query: query parameters (last value wins).
        headers: request headers; ``Authorization`` is redacted to ``"Bearer ***"``.
        body: raw request body.
        status: the status answered; for ``drop="after"`` the status that was
            produced but never sent; ``0`` when nothing was produced
            (``drop="before"``).
        at: clock time of arrival.
        route: the route name (``"issue"``, ``"get_job"``, ...) or ``None``.
        fault: the fault applied (``"delay"``, ``"status"``, ``"drop_before"``,
            ``"drop_after"``, ``"truncated"``, ``"garbage"``) or ``None``.
    """

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes = attrs.field(repr=False)
    status: int
    at: float
    route: str | None = None
    fault: str | None = None
