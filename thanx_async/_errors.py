"""Every exception thanx_async raises.

The tree::

    ThanxError
    ├── InvalidIdentifierError (also ValueError)   bad input refused before any request
    ├── APIError(status, code, message)            the server answered with an error
    │   ├── BadRequestError                        400
    │   ├── AuthenticationError                    401
    │   ├── PermissionDeniedError                  403
    │   ├── NotFoundError                          404
    │   ├── IdempotencyConflictError               422 on issue: same key, different body
    │   ├── UnprocessableEntityError               other 422 (e.g. revoke from a wrong state)
    │   ├── RateLimitError                         429
    │   └── ServerError                            5xx
    ├── TransportError                             no answer: connection, timeout, deadline
    ├── MalformedResponseError                     an answer we cannot parse (or too large)
    ├── JobFailedError(job)                        the issuance job ended in ``failed``
    ├── JobTimeoutError(job_id)                    a job did not finish before a deadline
    ├── BatcherClosedError                         the batcher is closed (or closing)
    └── JournalError                               the journal file is unusable

Errors carry the request context (method, path, status, code) but never
credentials: no header is ever copied into an exception, and the client's
tokens are cut out of any text the server sent back (an error body that
echoes the request's headers, say) before it reaches an exception or a log.

Whether a failed request may have taken effect on the server is part of the
error: :attr:`TransportError.may_have_succeeded` and
:attr:`MalformedResponseError.may_have_succeeded` (always ``False`` for a GET,
which changes nothing; ``False`` when nothing was sent at all).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from thanx_async._models import IssuanceJob

__all__ = [
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "BatcherClosedError",
    "IdempotencyConflictError",
    "InvalidIdentifierError",
    "JobFailedError",
    "JobTimeoutError",
    "JournalError",
    "MalformedResponseError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServerError",
    "ThanxError",
    "TransportError",
    "UnprocessableEntityError",
    "api_error_from_response",
]

#: Codes the server uses for a 400 that names one identifier, not the batch.
IDENTIFIER_ERROR_CODES = frozenset({"USER_EMAIL_INVALID", "USER_PHONE_INVALID"})

_MAX_BODY_IN_MESSAGE = 200
#: A server's own ``message`` is shown whole up to this length, then cut.
_MAX_MESSAGE = 1000
#: How much of an invalid identifier its error message shows.
_MAX_VALUE_SHOWN = 100

#: A 422 ``code`` on an issue POST that names the idempotency conflict
#: (the API documents none: ``IDEMPOTENCY_KEY_REUSED``, ``idempotency_conflict``...).
_IDEMPOTENCY_CODE = re.compile("idempoten", re.IGNORECASE)

Redact = Callable[[str], str]


def _keep(text: str) -> str:
    return text


def _shorten(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, saying how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


class ThanxError(Exception):
    """Root of every exception raised by thanx_async."""


class InvalidIdentifierError(ThanxError, ValueError):
    """An identifier was refused before anything was sent.

    Attributes:
        value: the value as given (an email or phone is not a secret).
        reason: what is wrong with it.
    """

    def __init__(self, value: object, reason: str) -> None:
        self.value = value
        self.reason = reason
        # A megabyte of junk must not make a megabyte of message (logs, tracebacks).
        shown = repr(value)
        if len(shown) > _MAX_VALUE_SHOWN:
            size = len(value) if isinstance(value, str | bytes) else len(shown)
            shown = f"{shown[:_MAX_VALUE_SHOWN]}... ({size} characters)"
        super().__init__(f"invalid identifier {shown}: {reason}")


class APIError(ThanxError):
    """The Thanx API answered a request with an error status.

    Attributes:
        status: the HTTP status code.
        code: the stable error code from the body (``None`` when absent).
        message: the human message from the body (may change between releases).
        method: the request method.
        path: the request path, without host or query string.
        retry_after: seconds from a ``Retry-After`` header, if the server sent one.
    """

    def __init__(
        self,
        status: int,
        code: str | None,
        message: str,
        *,
        method: str = "",
        path: str = "",
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.method = method
        self.path = path
        self.retry_after = retry_after
        where = f"{method} {path} " if method else ""
        super().__init__(f"{where}-> {status} {code or '-'}: {message}")

    @property
    def is_identifier_error(self) -> bool:
        """Whether the server blamed one identifier of the batch, not the whole request."""
        return self.status == 400 and self.code in IDENTIFIER_ERROR_CODES


class BadRequestError(APIError):
    """400: the request was malformed or an identifier was refused by the server."""


class AuthenticationError(APIError):
    """401: the token or client id was missing or wrong."""


class PermissionDeniedError(APIError):
    """403: the credential lacks a scope (``rewards.issue``)."""


class NotFoundError(APIError):
    """404: an unknown campaign, variant or job."""


class IdempotencyConflictError(APIError):
    """422 on issue: the idempotency key was used before with a different body.

    Never retried: a key names one exact body, so this is a real conflict.
    The API documents no code for it, so a 422 answering an issue POST that
    carried a key is a conflict when its body has no ``code`` or a code that
    mentions idempotency (``IDEMPOTENCY_KEY_REUSED``); any other code makes it
    an :class:`UnprocessableEntityError`.
    """


class UnprocessableEntityError(APIError):
    """422 elsewhere, such as revoking a job that is not finished."""


class RateLimitError(APIError):
    """429: a rate-limit window was crossed."""


class ServerError(APIError):
    """5xx: the server failed."""


class TransportError(ThanxError):
    """No usable answer: a failed connection, a timeout, a deadline passed.

    The connection failed, an attempt timed out, the server sent something
    that is not HTTP, or the call's deadline (``RetryPolicy.deadline``) passed,
    also while it waited for rate budget or for a token.

    Attributes:
        method: the request method.
        path: the request path.
        may_have_succeeded: whether the request may have taken effect on the
            server: ``True`` for a POST unless the SDK knows none of its
            attempts reached the server (the connection could not be opened,
            or the deadline passed while it waited for rate budget or a token,
            which the message then says); always ``False`` for a GET.
    """

    def __init__(
        self, message: str, *, method: str = "", path: str = "", may_have_succeeded: bool = True
    ) -> None:
        self.method = method
        self.path = path
        self.may_have_succeeded = may_have_succeeded
        where = f"{method} {path}: " if method else ""
        super().__init__(f"{where}{message}")


class MalformedResponseError(ThanxError):
    """The server answered with a body we cannot understand, or one over the size cap.

    For a POST the server answered 2xx, so the request may well have been
    processed: ``may_have_succeeded`` is set and the message says so. A POST
    carrying an idempotency key (every issue POST) was already re-sent with the
    same bytes and key within the retry policy before this was raised;
    re-sending it again with the same key is safe.

    Attributes:
        status: the HTTP status code of the answer.
        method: the request method.
        path: the request path.
        reason: what was wrong with the body.
        may_have_succeeded: whether the request may have taken effect on the
            server (``True`` for a POST, ``False`` for a GET).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        method: str = "",
        path: str = "",
        may_have_succeeded: bool = False,
        consequence: str = "",
    ) -> None:
        self.status = status
        self.method = method
        self.path = path
        self.reason = message
        self.may_have_succeeded = may_have_succeeded
        tail = f"; {consequence}" if consequence else ""
        super().__init__(f"{method} {path} -> {status}: {message}{tail}")


class JobFailedError(ThanxError):
    """The issuance job ended in state ``failed``.

    Attributes:
        job: the final job as the server reported it.
    """

    def __init__(self, job: IssuanceJob) -> None:
        self.job = job
        super().__init__(f"issuance job {job.id} failed")


class JobTimeoutError(ThanxError, TimeoutError):
    """A job did not reach a terminal state before a deadline.

    Attributes:
        job_id: the job that is still running (``None`` if it was never accepted).
    """

    def __init__(self, job_id: str | None, message: str = "") -> None:
        self.job_id = job_id
        super().__init__(message or f"issuance job {job_id} did not finish in time")


class BatcherClosedError(ThanxError):
    """The batcher is closed, or closed before this identifier was resolved."""


class JournalError(ThanxError):
    """The journal file cannot be used (corrupt, unknown schema, locked)."""


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def _parse_envelope(body: bytes) -> tuple[str | None, str | None]:
    """Return (code, message) from a wrapped or unwrapped error body, if any."""
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, None
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        data = data["error"]
    if not isinstance(data, dict):
        return None, None
    code, message = data.get("code"), data.get("message")
    return (
        code if isinstance(code, str) else None,
        message if isinstance(message, str) else None,
    )


def api_error_from_response(
    status: int,
    body: bytes,
    *,
    method: str,
    path: str,
    retry_after: float | None = None,
    idempotent_issue: bool = False,
    redact: Redact = _keep,
    secret_size: int = 0,
) -> APIError:
    """Build the typed error for an error answer.

    Args:
        status: the HTTP status.
        body: the raw body (JSON envelope, unwrapped JSON or anything else).
        method: the request method, for context.
        path: the request path, for context.
        retry_after: parsed ``Retry-After`` seconds, if present.
        idempotent_issue: the request was an issue POST carrying an idempotency
            key, so a 422 means the key was reused with a different body
            (unless the body's ``code`` says something else).
        redact: cuts secrets out of text taken from the body; applied before
            any truncation, so no part of a secret survives a cut.
        secret_size: the length of the longest secret ``redact`` removes.
    """
    code, message = _parse_envelope(body)
    if message is None:
        # Decode enough to see a secret that straddles the cut, redact, then cut.
        head = body[: _MAX_BODY_IN_MESSAGE + 4 * secret_size].decode("utf-8", "replace")
        text = redact(head).strip()[:_MAX_BODY_IN_MESSAGE]
        message = text or "(empty body)"
    else:
        message = _shorten(redact(message), _MAX_MESSAGE)
    if code is not None:
        code = _shorten(redact(code), _MAX_BODY_IN_MESSAGE)
    cls: type[APIError]
    if status == 422 and idempotent_issue and (code is None or _IDEMPOTENCY_CODE.search(code)):
        cls = IdempotencyConflictError
    elif status >= 500:
        cls = ServerError
    else:
        cls = _BY_STATUS.get(status, APIError)
    return cls(status, code, message, method=method, path=path, retry_after=retry_after)
