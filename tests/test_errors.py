"""Errors: built from status and envelope, typed, carrying context but no secrets."""

from __future__ import annotations

import pytest

import thanx_async as ta
from thanx_async._errors import api_error_from_response


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, ta.BadRequestError),
        (401, ta.AuthenticationError),
        (403, ta.PermissionDeniedError),
        (404, ta.NotFoundError),
        (422, ta.UnprocessableEntityError),
        (429, ta.RateLimitError),
        (500, ta.ServerError),
        (503, ta.ServerError),
        (418, ta.APIError),
    ],
)
def test_status_maps_to_its_class(status: int, cls: type[ta.APIError]) -> None:
    """Each documented status becomes its typed error, all under APIError and ThanxError."""
    err = api_error_from_response(status, b"{}", method="GET", path="/partner/scopes")
    assert type(err) is cls
    assert isinstance(err, ta.ThanxError)
    assert err.status == status


def test_wrapped_envelope() -> None:
    """The observed {"error": {code, message}} shape fills code and message."""
    err = api_error_from_response(
        403, b'{"error": {"code": "FORBIDDEN", "message": "no scope"}}', method="POST", path="/x"
    )
    assert (err.code, err.message, err.method, err.path) == ("FORBIDDEN", "no scope", "POST", "/x")
    assert "POST /x -> 403 FORBIDDEN: no scope" in str(err)


def test_unwrapped_envelope() -> None:
    """An unwrapped {code, message} body is understood too."""
    err = api_error_from_response(
        400, b'{"code": "USER_EMAIL_INVALID", "message": "bad email"}', method="POST", path="/x"
    )
    assert err.code == "USER_EMAIL_INVALID"
    assert err.is_identifier_error


def test_non_json_body_keeps_a_short_message() -> None:
    """A non-JSON error body (e.g. an HTML 502 page) still gives a typed error with its text."""
    err = api_error_from_response(502, b"<html>Bad Gateway</html>" * 100, method="GET", path="/x")
    assert isinstance(err, ta.ServerError)
    assert err.code is None
    assert err.message.startswith("<html>Bad Gateway")
    assert len(err.message) <= 200


def test_422_on_keyed_issue_is_an_idempotency_conflict() -> None:
    """A 422 answering a keyed issue POST is IdempotencyConflictError, elsewhere Unprocessable."""
    keyed = api_error_from_response(422, b"{}", method="POST", path="/x", idempotent_issue=True)
    assert isinstance(keyed, ta.IdempotencyConflictError)
    assert not isinstance(keyed, ta.UnprocessableEntityError)


@pytest.mark.parametrize(
    ("body", "cls"),
    [
        (b"{}", ta.IdempotencyConflictError),
        (b'{"error": {"code": "IDEMPOTENCY_KEY_REUSED"}}', ta.IdempotencyConflictError),
        (b'{"code": "Idempotency-Conflict"}', ta.IdempotencyConflictError),
        (b'{"error": {"code": "VARIANT_INACTIVE", "message": "x"}}', ta.UnprocessableEntityError),
    ],
)
def test_a_422_code_other_than_idempotency_is_unprocessable(
    body: bytes, cls: type[ta.APIError]
) -> None:
    """On a keyed issue, a 422 with a code unrelated to idempotency is UnprocessableEntityError."""
    err = api_error_from_response(422, body, method="POST", path="/x", idempotent_issue=True)
    assert type(err) is cls


def test_a_huge_server_message_is_cut() -> None:
    """A megabyte-long error message from the server is cut, saying how long it was."""
    body = b'{"error": {"code": "BAD_REQUEST", "message": "' + b"m" * 1_000_000 + b'"}}'
    err = api_error_from_response(400, body, method="POST", path="/x")
    assert len(err.message) < 1100
    assert err.message.endswith("(1000000 characters)")


def test_redaction_runs_before_the_cut() -> None:
    """A secret straddling the 200-character cut of a non-JSON body leaves no piece behind."""
    secret = "sk_live_ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    body = ("x" * 190 + secret + "y" * 50).encode()
    err = api_error_from_response(
        502,
        body,
        method="GET",
        path="/x",
        redact=lambda text: text.replace(secret, "<redacted>"),
        secret_size=len(secret),
    )
    assert "sk_live" not in str(err)
    assert err.message.startswith("x" * 190 + "<redacte")


def test_identifier_errors_are_valueerrors() -> None:
    """InvalidIdentifierError is also a ValueError, as callers validating input expect."""
    assert issubclass(ta.InvalidIdentifierError, ValueError)
    assert issubclass(ta.JobTimeoutError, TimeoutError)
