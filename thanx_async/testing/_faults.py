"""Scripted faults: make the next request(s) to a route slow, fail, vanish or arrive garbled.

Example:
    >>> faults = Faults()
    >>> rule = faults.add("issue", drop="after")      # commit the job, then hang up
    >>> faults.add("get_job", status=503, times=2)   # the next two polls get 503
    Fault(route='get_job', delay=None, status=503, drop=None, malformed=None, times=2)
"""

from __future__ import annotations

from typing import Final, Literal, get_args

import attrs

__all__ = ["ROUTES", "Fault", "Faults", "Route"]

Route = Literal["issue", "get_job", "revoke", "list_campaigns", "get_campaign", "scopes"]
#: Every route name a fault can target.
ROUTES: Final[tuple[str, ...]] = get_args(Route)


@attrs.define(kw_only=True)
class Fault:
    """One scripted fault; see :meth:`Faults.add` for what each field does.

    Attributes:
        route: the route it applies to.
        delay: seconds to sleep before handling, or ``None``.
        status: an error status answered instead of handling, or ``None``.
        drop: ``"before"`` or ``"after"`` handling, or ``None``.
        malformed: ``"truncated"`` or ``"garbage"``, or ``None``.
        times: how many more requests it applies to (``None``: forever).
    """

    route: Route
    delay: float | None = None
    status: int | None = None
    drop: Literal["before", "after"] | None = None
    malformed: Literal["truncated", "garbage"] | None = None
    times: int | None = 1


class Faults:
    """The scripted faults of one emulator, consumed in the order they were added."""

    def __init__(self) -> None:
        self._rules: list[Fault] = []

    @property
    def pending(self) -> list[Fault]:
        """The faults that have not been used up yet, in order."""
        return list(self._rules)

    def add(
        self,
        route: Route,
        *,
        delay: float | None = None,
        status: int | None = None,
        drop: Literal["before", "after"] | None = None,
        malformed: Literal["truncated", "garbage"] | None = None,
        times: int | None = 1,
    ) -> Fault:
        """Script a fault for the next ``times`` requests to ``route``.

        ``delay`` combines with any one of the other three, which exclude each other.

        Args:
            route: ``"issue"``, ``"get_job"``, ``"revoke"``, ``"list_campaigns"``,
                ``"get_campaign"`` or ``"scopes"``.
            delay: sleep this many (real) seconds before handling.
            status: answer this status (400-599, with the error envelope) without
                handling the request: nothing is validated, created or counted.
            drop: ``"before"`` closes the connection without handling;
                ``"after"`` handles the request completely (a job is created,
                the idempotency cache stores the response) and then closes
                the connection without answering.
            malformed: handle the request, then send its status with a body
                that is cut in half (``"truncated"``) or not JSON at all
                (``"garbage"``), still labelled ``application/json``.
            times: how many requests it applies to; ``None`` means every one.

        Note:
            aiohttp's client silently retries an idempotent request (GET) once
            when the server disconnects, so a single ``drop`` on ``get_job``,
            ``list_campaigns``, ``get_campaign`` or ``scopes`` is invisible to
            an aiohttp client: use ``times=2`` to make it see the error.
            POSTs are never retried by aiohttp. Faults apply before
            authentication, so a faulted request is matched by route only.

        Returns:
            The fault; it leaves :attr:`pending` once used up.

        Raises:
            ValueError: for an unknown route or an impossible combination.
        """
        if route not in ROUTES:
            raise ValueError(f"unknown route {route!r}; expected one of {', '.join(ROUTES)}")
        if sum(option is not None for option in (status, drop, malformed)) > 1:
            raise ValueError("status, drop and malformed exclude each other")
        if delay is None and status is None and drop is None and malformed is None:
            raise ValueError("a fault needs delay, status, drop or malformed")
        if status is not None and not 400 <= status <= 599:
            raise ValueError(f"status must be an error status (400-599), got {status}")
        if drop not in (None, "before", "after"):
            raise ValueError(f"drop must be 'before' or 'after', got {drop!r}")
        if malformed not in (None, "truncated", "garbage"):
            raise ValueError(f"malformed must be 'truncated' or 'garbage', got {malformed!r}")
        if delay is not None and delay < 0:
            raise ValueError(f"delay must be >= 0, got {delay}")
        if times is not None and times < 1:
            raise ValueError(f"times must be >= 1 or None, got {times}")
        fault = Fault(
            route=route, delay=delay, status=status, drop=drop, malformed=malformed, times=times
        )
        self._rules.append(fault)
        return fault

    def clear(self) -> None:
        """Forget every scripted fault."""
        self._rules.clear()

    def take(self, route: str) -> Fault | None:
        """Use up one application of the first fault for ``route``, if any."""
        for fault in self._rules:
            if fault.route == route:
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times == 0:
                        self._rules.remove(fault)
                return fault
        return None
