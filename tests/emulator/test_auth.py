"""Headers, credentials and scopes: 401, 400 (Accept-Version), 403, unknown routes, check order."""

from __future__ import annotations

import pytest

from tests.emulator.conftest import ISSUE, Api, issue_body
from thanx_async.testing import (
    DEFAULT_ACCESS_TOKEN,
    DEFAULT_CAMPAIGN_ID,
    DEFAULT_MERCHANT_ID,
    READONLY_ACCESS_TOKEN,
    READONLY_CLIENT_ID,
    EmulatorState,
)

READONLY = {"Authorization": f"Bearer {READONLY_ACCESS_TOKEN}", "X-ClientId": READONLY_CLIENT_ID}


async def test_missing_token_is_401(api: Api) -> None:
    """A request without Authorization gets 401 AUTHENTICATION_GENERIC."""
    answer = await api.request("GET", "/partner/scopes", without=("Authorization",))
    assert (answer.status, answer.code) == (401, "AUTHENTICATION_GENERIC")


async def test_wrong_token_is_401(api: Api) -> None:
    """A bearer token that matches no credential gets 401."""
    answer = await api.request("GET", "/partner/scopes", headers={"Authorization": "Bearer nope"})
    assert (answer.status, answer.code) == (401, "AUTHENTICATION_GENERIC")


async def test_wrong_client_id_is_401(api: Api) -> None:
    """A valid token with the wrong X-ClientId gets 401."""
    answer = await api.request("GET", "/partner/scopes", headers={"X-ClientId": "someone-else"})
    assert (answer.status, answer.code) == (401, "AUTHENTICATION_GENERIC")


async def test_missing_client_id_is_401(api: Api) -> None:
    """A valid token without X-ClientId gets 401."""
    answer = await api.request("GET", "/partner/scopes", without=("X-ClientId",))
    assert answer.status == 401


async def test_token_of_another_credential_is_401(api: Api) -> None:
    """Token and client id must belong to the same credential."""
    answer = await api.request("GET", "/partner/scopes", headers={"X-ClientId": READONLY_CLIENT_ID})
    assert answer.status == 401


async def test_non_bearer_scheme_is_401(api: Api) -> None:
    """Only the Bearer scheme is accepted."""
    answer = await api.request(
        "GET", "/partner/scopes", headers={"Authorization": f"Basic {DEFAULT_ACCESS_TOKEN}"}
    )
    assert answer.status == 401


@pytest.mark.parametrize("version", ["v3.0", "4.0", "v4.0 ", "V4.0"])
async def test_wrong_accept_version_is_400(api: Api, version: str) -> None:
    """Accept-Version must be exactly v4.0."""
    answer = await api.request("GET", "/partner/scopes", headers={"Accept-Version": version})
    assert (answer.status, answer.code) == (400, "BAD_REQUEST")


async def test_missing_accept_version_is_400(api: Api) -> None:
    """A request without Accept-Version gets 400 BAD_REQUEST."""
    answer = await api.request("GET", "/partner/scopes", without=("Accept-Version",))
    assert (answer.status, answer.code) == (400, "BAD_REQUEST")


async def test_scopes_lists_the_credentials_scopes(api: Api) -> None:
    """GET /partner/scopes answers the credential's scopes."""
    answer = await api.request("GET", "/partner/scopes")
    assert answer.status == 200
    assert answer.json == {"scopes": ["rewards.issue"]}


async def test_scopes_needs_no_issue_scope(api: Api) -> None:
    """GET /partner/scopes works for a credential without rewards.issue."""
    answer = await api.request("GET", "/partner/scopes", headers=READONLY)
    assert answer.json == {"scopes": ["campaigns.read"]}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", ISSUE),
        ("GET", "/partner/issuance_jobs/job_x?merchant_id=m"),
        ("POST", "/partner/issuance_jobs/job_x/revoke"),
        ("GET", f"/partner/campaigns?merchant_id={DEFAULT_MERCHANT_ID}"),
        ("GET", f"/partner/campaigns/{DEFAULT_CAMPAIGN_ID}"),
    ],
)
async def test_without_issue_scope_is_403(api: Api, method: str, path: str) -> None:
    """Every endpoint but scopes answers 403 FORBIDDEN without rewards.issue."""
    body = issue_body() if method == "POST" else None
    answer = await api.request(method, path, json=body, headers=READONLY)
    assert (answer.status, answer.code) == (403, "FORBIDDEN")


async def test_custom_credential_is_accepted(api: Api, state: EmulatorState) -> None:
    """add_credential makes a new client id and token pair valid."""
    state.add_credential("partner-2", "tok-2", scopes=("rewards.issue", "extra"))
    answer = await api.request(
        "GET",
        "/partner/scopes",
        headers={"X-ClientId": "partner-2", "Authorization": "Bearer tok-2"},
    )
    assert answer.json == {"scopes": ["rewards.issue", "extra"]}


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/partner/nothing"), ("GET", "/"), ("DELETE", ISSUE), ("GET", ISSUE + "/x")],
)
async def test_unknown_route_is_404_with_envelope(api: Api, method: str, path: str) -> None:
    """Unknown paths and methods get 404 RESOURCE_NOT_FOUND in the error envelope."""
    answer = await api.request(method, path)
    assert (answer.status, answer.code) == (404, "RESOURCE_NOT_FOUND")
    assert answer.json["error"]["message"]


async def test_auth_is_checked_before_accept_version(api: Api) -> None:
    """401 wins over a bad Accept-Version."""
    answer = await api.request(
        "GET", "/partner/scopes", without=("Authorization", "Accept-Version")
    )
    assert answer.status == 401


async def test_accept_version_is_checked_before_scope(api: Api) -> None:
    """400 for Accept-Version wins over 403 for a missing scope."""
    answer = await api.request(
        "GET",
        f"/partner/campaigns/{DEFAULT_CAMPAIGN_ID}",
        headers=READONLY,
        without=("Accept-Version",),
    )
    assert answer.status == 400


async def test_scope_is_checked_before_the_body(api: Api) -> None:
    """403 wins over an invalid body."""
    answer = await api.request("POST", ISSUE, body=b"not json", headers=READONLY)
    assert answer.status == 403
