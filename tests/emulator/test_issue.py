"""POST /partner/campaigns/issue: what is accepted, and every way a body is refused."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.emulator.conftest import ISSUE, Api, identifiers, issue_body
from thanx_async.testing import (
    DEFAULT_CAMPAIGN_ID,
    DEFAULT_MERCHANT_ID,
    DEFAULT_VARIANT_ID,
    OTHER_CAMPAIGN_ID,
    OTHER_MERCHANT_ID,
    EmulatorState,
)


async def test_valid_request_creates_a_pending_job(api: Api, state: EmulatorState) -> None:
    """A valid body gets 202 with the documented job shape in state pending."""
    answer = await api.issue(identifiers(3))
    assert answer.status == 202
    assert answer.headers["Content-Type"].startswith("application/json")
    job = answer.job
    assert job["id"].startswith("job_")
    assert set(job) == {
        "id", "campaign_id", "variant_id", "state", "total_count", "processed_count",
        "success_count", "failure_count", "progress_percent", "created_at", "started_at",
        "completed_at",
    }  # fmt: skip
    assert job["state"] == "pending"
    assert (job["campaign_id"], job["variant_id"]) == (DEFAULT_CAMPAIGN_ID, DEFAULT_VARIANT_ID)
    assert (job["total_count"], job["processed_count"], job["progress_percent"]) == (3, 0, 0)
    assert job["created_at"].endswith("Z")
    assert job["started_at"] is None
    assert job["completed_at"] is None
    assert list(state.jobs) == [job["id"]]


async def test_full_batch_of_10000_is_accepted(api: Api) -> None:
    """Exactly 10,000 identifiers is the largest legal batch."""
    answer = await api.issue(identifiers(10_000))
    assert (answer.status, answer.job["total_count"]) == (202, 10_000)


async def test_charset_parameter_on_content_type_is_fine(api: Api) -> None:
    """application/json with a charset parameter is still JSON."""
    answer = await api.request(
        "POST",
        ISSUE,
        body=orjson.dumps(issue_body()),
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert answer.status == 202


async def test_non_json_body_is_400(api: Api) -> None:
    """A body that is not JSON gets 400 BAD_REQUEST."""
    answer = await api.request(
        "POST", ISSUE, body=b'{"merchant_id": ', headers={"Content-Type": "application/json"}
    )
    assert (answer.status, answer.code) == (400, "BAD_REQUEST")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_non_json_content_type_is_400(api: Api, content_type: str | None) -> None:
    """A POST whose Content-Type is not application/json gets 400, even with a JSON body."""
    headers = {"Content-Type": content_type} if content_type else {}
    answer = await api.request("POST", ISSUE, body=orjson.dumps(issue_body()), headers=headers)
    assert (answer.status, answer.code) == (400, "BAD_REQUEST")


@pytest.mark.parametrize("field", ["merchant_id", "campaign_id", "variant_id", "identifiers"])
async def test_missing_field_is_400(api: Api, field: str) -> None:
    """Each of the four fields is required; the message names the missing one."""
    body = issue_body()
    del body[field]
    answer = await api.request("POST", ISSUE, json=body)
    assert (answer.status, answer.code) == (400, "BAD_REQUEST")
    assert field in answer.json["error"]["message"]


@pytest.mark.parametrize(
    "body",
    [
        [],
        "a string",
        issue_body(identifiers={"type": "email", "value": "a@b.co"}),
        issue_body(merchant_id=7),
        issue_body(campaign_id=""),
    ],
    ids=["array", "string", "identifiers-object", "int-merchant", "empty-campaign"],
)
async def test_wrong_shapes_are_400(api: Api, body: Any) -> None:
    """A body that is not an object, or fields of the wrong type, get 400 BAD_REQUEST."""
    answer = await api.request("POST", ISSUE, json=body)
    assert (answer.status, answer.code) == (400, "BAD_REQUEST")


@pytest.mark.parametrize("count", [0, 10_001])
async def test_identifier_count_out_of_range_is_400(
    api: Api, count: int, state: EmulatorState
) -> None:
    """0 and 10,001 identifiers get 400 BAD_REQUEST and create nothing."""
    answer = await api.issue(identifiers(count))
    assert (answer.status, answer.code) == (400, "BAD_REQUEST")
    assert not state.jobs


@pytest.mark.parametrize(
    "item",
    [
        {"type": "twitter", "value": "@jane"},
        {"value": "jane@example.com"},
        {"type": "email"},
        {"type": "email", "value": 42},
        "jane@example.com",
        ["email", "jane@example.com"],
    ],
    ids=["unknown-type", "no-type", "no-value", "int-value", "bare-string", "array"],
)
async def test_malformed_identifier_item_is_400(api: Api, item: Any) -> None:
    """An identifier that is not an object with a known type and a string value gets 400."""
    answer = await api.issue([*identifiers(3), item])
    assert (answer.status, answer.code) == (400, "BAD_REQUEST")
    assert "identifiers[3]" in answer.json["error"]["message"]


@pytest.mark.parametrize(
    "phone",
    ["4155551234", "+04155551234", "+1415555123456789", "+1 415 555 1234", "+", "+1-415", "+١٢٣"],
)
async def test_non_e164_phone_is_user_phone_invalid(api: Api, phone: str) -> None:
    """A phone that is not E.164 refuses the whole request with USER_PHONE_INVALID, naming it."""
    answer = await api.issue([*identifiers(2), {"type": "phone", "value": phone}])
    assert (answer.status, answer.code) == (400, "USER_PHONE_INVALID")
    message = answer.json["error"]["message"]
    assert "identifiers[2]" in message
    assert phone in message


@pytest.mark.parametrize("phone", ["+1", "+141555512345678", "+447911123456"])
async def test_e164_edge_phones_are_accepted(api: Api, phone: str) -> None:
    """One to fifteen digits after + with a first digit 1-9 is E.164."""
    answer = await api.issue([{"type": "phone", "value": phone}])
    assert answer.status == 202


@pytest.mark.parametrize(
    "email",
    [
        "jane.example.com",
        "jane@example",
        "@example.com",
        "jane@@example.com",
        "jane doe@ex.com",
        "",
    ],
)
async def test_bad_email_is_user_email_invalid(api: Api, email: str) -> None:
    """A syntactically bad email gets USER_EMAIL_INVALID naming its index and value."""
    answer = await api.issue([{"type": "email", "value": email}, *identifiers(2)])
    assert (answer.status, answer.code) == (400, "USER_EMAIL_INVALID")
    message = answer.json["error"]["message"]
    assert "identifiers[0]" in message
    assert repr(email) in message


async def test_email_with_newline_is_refused(api: Api) -> None:
    """Two valid emails glued by a newline are one invalid value."""
    answer = await api.issue([{"type": "email", "value": "a@b.co\nc@d.co"}])
    assert answer.code == "USER_EMAIL_INVALID"


async def test_first_offender_is_reported(api: Api) -> None:
    """With several bad identifiers, the message names the first one."""
    items = identifiers(5)
    items[1] = {"type": "email", "value": "bad"}
    items[3] = {"type": "phone", "value": "bad"}
    answer = await api.issue(items)
    assert answer.code == "USER_EMAIL_INVALID"
    assert "identifiers[1]" in answer.json["error"]["message"]


async def test_server_rejected_identifier_refuses_the_whole_request(
    api: Api, state: EmulatorState
) -> None:
    """A syntactically fine identifier in server_rejected gets the identifier-level 400 code."""
    items = identifiers(6)
    state.server_rejected.add((items[4]["type"], items[4]["value"]))
    state.server_rejected.add(("email", "never-sent@example.com"))
    answer = await api.issue(items)
    assert (answer.status, answer.code) == (400, "USER_EMAIL_INVALID")
    assert "identifiers[4]" in answer.json["error"]["message"]
    assert not state.jobs
    assert (await api.issue(items[:4])).status == 202


async def test_server_rejected_phone_uses_phone_code(api: Api, state: EmulatorState) -> None:
    """A rejected phone answers USER_PHONE_INVALID."""
    state.server_rejected.add(("phone", "+14155550123"))
    answer = await api.issue([{"type": "phone", "value": "+14155550123"}])
    assert answer.code == "USER_PHONE_INVALID"


async def test_unknown_campaign_is_404(api: Api) -> None:
    """A campaign id that does not exist gets 404 RESOURCE_NOT_FOUND."""
    answer = await api.issue(campaign_id="camp_nope")
    assert (answer.status, answer.code) == (404, "RESOURCE_NOT_FOUND")


async def test_campaign_of_another_merchant_is_404(api: Api) -> None:
    """A campaign must belong to the merchant in the body."""
    answer = await api.issue(campaign_id=OTHER_CAMPAIGN_ID, variant_id="var_launch_gift")
    assert (answer.status, answer.code) == (404, "RESOURCE_NOT_FOUND")
    ok = await api.issue(
        merchant_id=OTHER_MERCHANT_ID, campaign_id=OTHER_CAMPAIGN_ID, variant_id="var_launch_gift"
    )
    assert ok.status == 202


async def test_unknown_merchant_is_404(api: Api) -> None:
    """An unknown merchant gets 404 RESOURCE_NOT_FOUND."""
    answer = await api.issue(merchant_id="merchant_nope")
    assert (answer.status, answer.code) == (404, "RESOURCE_NOT_FOUND")


async def test_variant_outside_campaign_is_400(api: Api) -> None:
    """A variant of another campaign gets 400 BAD_REQUEST."""
    answer = await api.issue(variant_id="var_birthday_dessert")
    assert (answer.status, answer.code) == (400, "BAD_REQUEST")
    assert "var_birthday_dessert" in answer.json["error"]["message"]


async def test_control_variant_can_be_issued(api: Api) -> None:
    """The control variant (no reward template) is still a variant of its campaign."""
    answer = await api.issue(variant_id="var_welcome_control")
    assert answer.status == 202


async def test_added_campaign_is_issuable(api: Api, state: EmulatorState) -> None:
    """add_campaign with bare variant ids makes a campaign that accepts issues."""
    state.add_campaign("merchant_new", "camp_new", variants=["var_a", "var_b"], name="New")
    answer = await api.issue(merchant_id="merchant_new", campaign_id="camp_new", variant_id="var_b")
    assert answer.status == 202


async def test_state_options_apply_to_new_jobs(api: Api, state: EmulatorState) -> None:
    """start_delay and speed are read when a job is created."""
    state.start_delay = 5.0
    job_id = (await api.issue()).job["id"]
    assert state.jobs[job_id].start_delay == 5.0
    assert state.jobs[job_id].merchant_id == DEFAULT_MERCHANT_ID
