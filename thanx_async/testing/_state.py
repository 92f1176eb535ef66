"""Everything the emulator knows and decides, with no HTTP in sight.

Users are "not found" (their identifier lands in ``summary.failures`` with
``"User not found"``) by this default rule: an **email whose local part starts
with** ``unknown`` (``unknown.42@example.com``, case-insensitive) or a **phone
whose last four digits are** ``0000`` (``+14155550000``). Pass ``not_found=`` to
replace the rule, or add ``(type, value)`` pairs to ``state.unknown_users``.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from thanx_async.testing._catalog import Campaign, Catalog, Variant
from thanx_async.testing._faults import Faults
from thanx_async.testing._jobs import Job, LedgerEntry
from thanx_async.testing._limits import IdempotencyCache, SlidingLog
from thanx_async.testing._records import (
    DEFAULT_ACCESS_TOKEN,
    DEFAULT_CLIENT_ID,
    READONLY_ACCESS_TOKEN,
    READONLY_CLIENT_ID,
    Credential,
    LoggedRequest,
)
from thanx_async.testing._rules import ApiError
from thanx_async.testing._webhook_faults import WEBHOOK_EVENTS
from thanx_async.testing._webhooks import DEFAULT_WEBHOOK_SECRET, WebhookOutbox

__all__ = ["EmulatorState", "default_not_found"]

ISSUE_SCOPE = "rewards.issue"
#: The ``timespec`` values :class:`EmulatorState` accepts, coarsest first.
TIMESPECS: Final = ("seconds", "milliseconds", "microseconds")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def default_not_found(kind: str, value: str) -> bool:
    """The default rule: email local part starting ``unknown``, or phone ending ``0000``."""
    if kind == "email":
        return value.partition("@")[0].lower().startswith("unknown")
    return value.endswith("0000")


class EmulatorState:
    """The emulator's whole world: credentials, catalogue, jobs, caches, logs, faults.

    All timing reads ``clock``: job progress, rate-limit windows, idempotency
    retention and revocation are computed from it when asked, so tests can
    drive time with a :class:`ManualClock`. Job timestamps are wall-clock ISO
    8601 strings derived from it (``wall time at construction + clock delta``),
    in whole seconds by default (``2025-06-15T10:30:00Z``, as the API's
    documentation shows them), truncated as a server would; ``timespec``
    asks for finer ones.

    Rate limits are a sliding log per credential counting every admitted
    request (polls and idempotent replays included), stamped when the server
    handles it (on arrival, or after a scripted delay). A request that would
    exceed either window is answered 429 and is **not** counted; neither are
    unauthenticated requests (401) nor those answered by a scripted ``status``
    fault. Set a limit to ``None`` or ``0`` to disable that window.

    Users are not found by the default rule (email local part starting with
    ``unknown``, phone ending in ``0000``), by ``not_found`` if given (it
    replaces the rule), and for every pair in :attr:`unknown_users`. The rule is
    applied once per job, when its results are first read.

    Args:
        clock: monotonic seconds; ``time.monotonic`` by default.
        rate_limit_per_second: requests per short window (``None``/``0``: off).
        rate_limit_second: length of the short window in seconds.
        rate_limit_per_window: requests per long window (``None``/``0``: off).
        rate_limit_window: length of the long window in seconds.
        send_retry_after: add a ``Retry-After`` header (whole seconds) to 429s.
        start_delay: seconds from a job's creation to ``processing``.
        speed: identifiers processed per second (``float("inf")``: instant).
        idempotency_retention: seconds an idempotency key is remembered.
        revoke_delay: seconds from ``revoking`` to ``revoked``.
        not_found: predicate ``(type, value) -> bool`` replacing the default rule.
        seed: add the default credentials and demo catalogue.
        log_requests: keep :attr:`requests` and ``webhooks.deliveries`` (turn
            off for very long runs).
        webhook_url: where the running emulator posts signed webhooks when
            jobs end (``None``: none; settable later as ``webhooks.url``).
        webhook_secret: the secret they are signed with.
        webhook_events: which events to send (both by default).
        webhook_faults: delivery faults, each a mapping of
            :meth:`WebhookFaults.add` arguments (or add them to ``webhooks.faults``).
        timespec: precision of job timestamps: ``"seconds"`` (the default, as
            documented by the API), ``"milliseconds"`` or ``"microseconds"``.

    Example:
        >>> state = EmulatorState(clock=ManualClock(), rate_limit_per_second=None)
        >>> state.server_rejected.add(("email", "blocked@example.com"))
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        rate_limit_per_second: int | None = 5,
        rate_limit_second: float = 1.0,
        rate_limit_per_window: int | None = 2000,
        rate_limit_window: float = 900.0,
        send_retry_after: bool = False,
        start_delay: float = 0.2,
        speed: float = 20_000.0,
        idempotency_retention: float = 86_400.0,
        revoke_delay: float = 0.5,
        not_found: Callable[[str, str], bool] | None = None,
        seed: bool = True,
        log_requests: bool = True,
        webhook_url: str | None = None,
        webhook_secret: str = DEFAULT_WEBHOOK_SECRET,
        webhook_events: Iterable[str] = WEBHOOK_EVENTS,
        webhook_faults: Iterable[Mapping[str, Any]] = (),
        timespec: str = "seconds",
    ) -> None:
        if timespec not in TIMESPECS:
            raise ValueError(f"timespec must be one of {', '.join(TIMESPECS)}; got {timespec!r}")
        self.clock = clock
        self.timespec = timespec
        self.rate_limit_per_second = rate_limit_per_second
        self.rate_limit_second = rate_limit_second
        self.rate_limit_per_window = rate_limit_per_window
        self.rate_limit_window = rate_limit_window
        self.send_retry_after = send_retry_after
        self.start_delay = start_delay
        self.speed = speed
        self.idempotency_retention = idempotency_retention
        self.revoke_delay = revoke_delay
        self.not_found = not_found
        self.log_requests = log_requests
        #: Extra ``(type, value)`` pairs whose user is not found.
        self.unknown_users: set[tuple[str, str]] = set()
        #: ``(type, value)`` pairs that make the server refuse the whole issue
        #: request with 400 ``USER_EMAIL_INVALID`` / ``USER_PHONE_INVALID``.
        self.server_rejected: set[tuple[str, str]] = set()
        self.credentials: dict[str, Credential] = {}
        self.catalog = Catalog()
        #: Every job ever created, by id, in creation order.
        self.jobs: dict[str, Job] = {}
        #: Every request received, in the order they were answered.
        self.requests: list[LoggedRequest] = []
        self.faults = Faults()
        self.idempotency = IdempotencyCache()
        self._rate_logs: dict[str, SlidingLog] = {}
        self._fail_next = 0
        self._wall_offset = time.time() - clock()
        #: The webhooks owed when jobs end: URL, secret, faults, recorded deliveries.
        self.webhooks = WebhookOutbox(
            self,
            url=webhook_url,
            secret=webhook_secret,
            events=webhook_events,
            faults=webhook_faults,
        )
        if seed:
            self.add_credential(DEFAULT_CLIENT_ID, DEFAULT_ACCESS_TOKEN)
            self.add_credential(READONLY_CLIENT_ID, READONLY_ACCESS_TOKEN, ("campaigns.read",))
            self.catalog.seed()

    # -- configuration -----------------------------------------------------

    def add_credential(
        self, client_id: str, token: str, scopes: Iterable[str] = (ISSUE_SCOPE,)
    ) -> Credential:
        """Accept ``Authorization: Bearer {token}`` with ``X-ClientId: {client_id}``."""
        credential = Credential(client_id=client_id, access_token=token, scopes=tuple(scopes))
        self.credentials[client_id] = credential
        return credential

    def add_merchant(self, merchant_id: str) -> None:
        """Register a merchant with no campaigns (no-op if it exists)."""
        self.catalog.add_merchant(merchant_id)

    def add_campaign(
        self,
        merchant_id: str,
        campaign_id: str,
        *,
        variants: Iterable[Variant | str] | None = None,
        name: str | None = None,
        **fields: Any,
    ) -> Campaign:
        """Add a campaign (and its merchant, if new).

        Args:
            merchant_id: the owning merchant.
            campaign_id: a new, globally unique campaign id.
            variants: :class:`Variant` objects or bare variant ids (which get a
                name and a reward template); one variant by default.
            name: human name; derived from the id by default.
            **fields: other :class:`Campaign` fields (``objective``,
                ``fine_print``, ``start_at``, ``end_at``, ``redeemable_from``,
                ``redeemable_to``, ``time_zone``).

        Returns:
            The campaign.
        """
        return self.catalog.add_campaign(
            merchant_id, campaign_id, variants=variants, name=name, **fields
        )

    def fail_next_jobs(self, n: int = 1) -> None:
        """Make the next ``n`` created jobs end ``failed`` instead of ``completed``."""
        self._fail_next += n

    def fail_job(self, job_id: str, *, immediately: bool = False) -> None:
        """Make an unfinished job end ``failed`` (now, or when it would have completed).

        Raises:
            KeyError: unknown job.
            ValueError: the job already finished.
        """
        job = self.jobs[job_id]
        now = self.clock()
        if job.state_at(now) not in ("pending", "processing"):
            raise ValueError(f"job {job_id} already finished ({job.state_at(now)})")
        job.failing = True
        if immediately:
            job.failed_at = now

    # -- what tests assert on ----------------------------------------------

    def job_json(self, job_id: str) -> dict[str, Any]:
        """The job as ``GET /partner/issuance_jobs/{id}`` would show it now."""
        return self.jobs[job_id].to_json(self.clock(), self.iso)

    def ledger(self) -> list[LedgerEntry]:
        """Every reward issued so far: successful identifiers of jobs completed by the clock."""
        now = self.clock()
        return [entry for job in self.jobs.values() for entry in job.ledger(now)]

    def issued_count(
        self,
        kind: str,
        value: str,
        *,
        campaign_id: str | None = None,
        variant_id: str | None = None,
        include_revoked: bool = True,
    ) -> int:
        """How many times ``(kind, value)`` got a reward, optionally in one campaign/variant."""
        return sum(
            times
            for (_, campaign, variant, *identifier), times in self.issuance_counts(
                include_revoked=include_revoked
            ).items()
            if identifier == [kind, value]
            and campaign_id in (None, campaign)
            and variant_id in (None, variant)
        )

    def issuance_counts(
        self, *, include_revoked: bool = True
    ) -> Counter[tuple[str, str, str, str, str]]:
        """``(merchant, campaign, variant, type, value)`` → times issued.

        Cheap enough for a million issued identifiers: it reads the jobs
        directly instead of building :class:`LedgerEntry` objects.

        Example:
            >>> counts = state.issuance_counts()
            >>> assert set(counts.values()) <= {1}, "someone was rewarded twice"
        """
        now = self.clock()
        counts: Counter[tuple[str, str, str, str, str]] = Counter()
        for job in self.jobs.values():
            if not include_revoked and job.state_at(now) == "revoked":
                continue
            where = (job.merchant_id, job.campaign_id, job.variant_id)
            counts.update(
                (*where, item["type"], item["value"]) for _, item in job.issued_items(now)
            )
        return counts

    def requests_for(self, route: str) -> list[LoggedRequest]:
        """The logged requests to one route (``"issue"``, ``"get_job"``, ...)."""
        return [request for request in self.requests if request.route == route]

    # -- per-request decisions ---------------------------------------------

    def iso(self, at: float) -> str:
        """The ISO 8601 wall-clock time (UTC, ``Z``) of clock time ``at``, to ``timespec``.

        Truncated, never rounded: a server stamping whole seconds shows
        ``10:30:00Z`` until ``10:30:01`` has begun.
        """
        # Whole microseconds first (integer arithmetic from there on), so that
        # rounding to microseconds can never carry into the next second.
        micros = math.floor((at + self._wall_offset) * 1_000_000)
        moment = _EPOCH + timedelta(microseconds=micros)
        return moment.isoformat(timespec=self.timespec).replace("+00:00", "Z")

    def is_not_found(self, kind: str, value: str) -> bool:
        """Whether the user behind ``(kind, value)`` does not exist."""
        if (kind, value) in self.unknown_users:
            return True
        return (self.not_found or default_not_found)(kind, value)

    def authenticate(self, client_id: str | None, authorization: str | None) -> Credential:
        """The credential matching both headers.

        Raises:
            ApiError: 401 ``AUTHENTICATION_GENERIC``.
        """
        scheme, _, token = (authorization or "").partition(" ")
        credential = self.credentials.get(client_id or "")
        if credential is None or scheme.lower() != "bearer" or token != credential.access_token:
            raise ApiError(401, "missing or invalid access token or client id")
        return credential

    def admit(self, credential: Credential) -> None:
        """Count one request against the credential's rate limits.

        Raises:
            ApiError: 429 ``RATE_LIMITED`` (not counted).
        """
        log = self._rate_logs.setdefault(credential.client_id, SlidingLog())
        wait = log.admit(
            self.clock(),
            (
                (self.rate_limit_per_second, self.rate_limit_second),
                (self.rate_limit_per_window, self.rate_limit_window),
            ),
        )
        if wait is not None:
            headers = (
                {"Retry-After": str(max(1, int(wait + 0.999)))} if self.send_retry_after else {}
            )
            raise ApiError(429, "rate limit exceeded", headers=headers)

    @staticmethod
    def authorize(credential: Credential, route: str) -> None:
        """Check scopes: everything but ``scopes`` needs ``rewards.issue``.

        Raises:
            ApiError: 403 ``FORBIDDEN``.
        """
        if route != "scopes" and ISSUE_SCOPE not in credential.scopes:
            raise ApiError(403, f"this credential lacks the {ISSUE_SCOPE} scope")

    def take_failing_flag(self) -> bool:
        """Whether the job being created is one of those :meth:`fail_next_jobs` asked for."""
        if self._fail_next > 0:
            self._fail_next -= 1
            return True
        return False

    def log(self, request: LoggedRequest) -> None:
        """Append to the request log (unless logging is off)."""
        if self.log_requests:
            self.requests.append(request)
