"""parse_event: the documented envelopes become typed events; anything else a typed error."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.webhooks.conftest import COMPLETED_DATA, ISSUED_DATA, SECRET, envelope, signed
from thanx_async import Identifier, JobState, ThanxError
from thanx_async.webhooks import (
    BatchFailure,
    InvalidSignatureError,
    RewardBatchCompleted,
    RewardIssued,
    UnknownEvent,
    WebhookEvent,
    WebhookPayloadError,
    parse_event,
)


def parse(body: bytes) -> WebhookEvent:
    return parse_event(*signed(body), SECRET)


def completed(**changes: Any) -> bytes:
    return envelope("reward_batch.completed", {**COMPLETED_DATA, **changes})


def issued(**changes: Any) -> bytes:
    return envelope("reward.issued", {**ISSUED_DATA, **changes})


def test_documented_batch_completed() -> None:
    """The documented reward_batch.completed reads completely; failures name the value."""
    event = parse(completed())
    assert isinstance(event, RewardBatchCompleted)
    assert event.event == "reward_batch.completed"
    assert event.issuance_job_id == "job_xyz789"
    assert event.merchant_id == "mer_abc123"
    assert event.state is JobState.COMPLETED
    assert (event.total_count, event.issued_count, event.failed_count) == (2, 1, 1)
    assert event.failures == (
        BatchFailure(user_identifier="+14155551234", reason="User not found"),
    )
    assert event.failures[0].identifier == Identifier.phone("+14155551234")
    assert event.timestamp == datetime(2025, 6, 15, 10, 30, 15, tzinfo=UTC)
    assert event.data == COMPLETED_DATA


def test_batch_completed_without_optional_fields() -> None:
    """Only the job id and state are required; counts, merchant and failures may be absent."""
    event = parse(envelope("reward_batch.completed", {"issuance_job_id": "j", "state": "failed"}))
    assert isinstance(event, RewardBatchCompleted)
    assert event.state is JobState.FAILED
    assert event.merchant_id is None
    assert (event.total_count, event.issued_count, event.failed_count) == (None, None, None)
    assert event.failures == ()
    nulls = parse(completed(merchant_id=None, total_count=None, failures=None))
    assert isinstance(nulls, RewardBatchCompleted)
    assert (nulls.merchant_id, nulls.total_count, nulls.failures) == (None, None, ())


def test_unknown_job_state_keeps_its_raw_value() -> None:
    """A state Thanx invents later is kept, flagged unknown, never a crash."""
    event = parse(completed(state="partially_completed"))
    assert isinstance(event, RewardBatchCompleted)
    assert event.state.value == "partially_completed"
    assert not event.state.known


def test_failure_identifier_is_normalised_or_none() -> None:
    """A failure's identifier normalises like submissions do; a value that is neither is None."""
    assert BatchFailure(user_identifier=" Jane@Example.COM ").identifier == Identifier.email(
        "jane@example.com"
    )
    assert BatchFailure(user_identifier="not an identifier").identifier is None


def test_documented_reward_issued() -> None:
    """The documented reward.issued reads completely, campaign and variant included."""
    event = parse(issued())
    assert isinstance(event, RewardIssued)
    assert event.event == "reward.issued"
    assert event.issuance_job_id == "job_xyz789"
    assert event.merchant_id == "mer_abc123"
    assert event.reward_id == "rwd_abc123"
    assert (event.identifier_type, event.identifier_index) == ("email", 0)
    assert event.user_id == "usr_def456"
    assert event.state == "active"
    assert event.expires_at == datetime(2025, 9, 30, 23, 59, 59, tzinfo=UTC)
    assert event.campaign is not None
    assert event.campaign.id == "camp_abc123"
    assert event.campaign.name == "Summer Free Coffee"
    assert event.campaign.time_zone == "America/Los_Angeles"
    assert event.campaign.start_at == datetime(2025, 6, 1, tzinfo=UTC)
    assert event.variant is not None
    assert (event.variant.id, event.variant.reward_template_id) == ("var_treat1", "abc123def456")
    assert event.data == ISSUED_DATA


def test_reward_issued_minimal_and_tolerant() -> None:
    """Only the job id is required; descriptive values that do not read become None."""
    minimal = parse(envelope("reward.issued", {"issuance_job_id": "j"}))
    assert isinstance(minimal, RewardIssued)
    assert (minimal.reward_id, minimal.identifier_index, minimal.campaign) == (None, None, None)
    assert minimal.variant is None
    odd = parse(issued(expires_at="someday", campaign=["not", "an", "object"]))
    assert isinstance(odd, RewardIssued)
    assert (odd.expires_at, odd.campaign) == (None, None)
    no_variant = parse(issued(campaign={"id": "c", "name": 5, "start_at": 12}))
    assert isinstance(no_variant, RewardIssued)
    assert no_variant.campaign is not None
    assert no_variant.campaign.name is None
    assert no_variant.variant is None
    assert no_variant.data["campaign"] == {"id": "c", "name": 5, "start_at": 12}


@pytest.mark.parametrize("data", [{"a": [1, 2]}, [1, 2], "text", None])
def test_unknown_event_is_kept_raw(data: Any) -> None:
    """An event name the SDK does not know is returned as UnknownEvent with its raw data."""
    event = parse(envelope("purchase.created", data))
    assert event == UnknownEvent(
        event="purchase.created", timestamp=datetime(2025, 6, 15, 10, 30, 15, tzinfo=UTC), data=data
    )


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        ("2025-06-15T10:30:15Z", datetime(2025, 6, 15, 10, 30, 15, tzinfo=UTC)),
        ("2025-06-15T12:30:15.250+02:00", datetime(2025, 6, 15, 10, 30, 15, 250000, tzinfo=UTC)),
        ("2025-06-15T10:30:15", datetime(2025, 6, 15, 10, 30, 15, tzinfo=UTC)),
        (1750000000, datetime.fromtimestamp(1750000000, UTC)),
        ("yesterday", None),
        (True, None),
        (1e300, None),
        ([2025, 6, 15], None),
    ],
)
def test_timestamps(timestamp: Any, expected: datetime | None) -> None:
    """ISO 8601 (naive read as UTC) and epoch seconds read; anything else is None, not an error."""
    event = parse(envelope("reward_batch.completed", COMPLETED_DATA, timestamp))
    assert event.timestamp == expected


def test_missing_timestamp_is_none() -> None:
    """An envelope without a timestamp still reads."""
    assert parse(envelope("reward_batch.completed", COMPLETED_DATA, None)).timestamp is None


def test_counts_up_to_64_bits_are_kept() -> None:
    """A large count is kept exactly (no float rounding)."""
    event = parse(completed(total_count=2**64 - 1))
    assert isinstance(event, RewardBatchCompleted)
    assert event.total_count == 2**64 - 1


MALFORMED: list[tuple[bytes, str]] = [
    (b"not json", "not valid JSON"),
    (b"", "not valid JSON"),
    (b'{"event": "reward.issued", "data": {"issuance_job_id": "j"', "not valid JSON"),
    (b'[{"event": "reward.issued"}]', "JSON list"),
    (b'"reward.issued"', "JSON str"),
    (b'{"data": {}}', "no 'event'"),
    (b'{"event": 7, "data": {}}', "no 'event'"),
    (b'{"event": "", "data": {}}', "no 'event'"),
    (envelope("reward_batch.completed", None), "'data'"),
    (envelope("reward_batch.completed", [COMPLETED_DATA]), "'data'"),
    (b'{"event":"reward_batch.completed","data":{"total_count":1e400}}', "not valid JSON"),
    (completed(issuance_job_id=None), "issuance_job_id"),
    (completed(issuance_job_id=""), "issuance_job_id"),
    (completed(issuance_job_id=123), "issuance_job_id"),
    (completed(state=None), "state"),
    (completed(state=["completed"]), "state"),
    (completed(merchant_id=42), "merchant_id"),
    (completed(total_count=-1), "total_count"),
    (completed(issued_count=True), "issued_count"),
    (completed(failed_count=1.0), "failed_count"),
    (completed(failed_count="1"), "failed_count"),
    (completed(total_count=1.8446744073709552e19), "total_count"),
    (completed(failures={"user_identifier": "x"}), "failures"),
    (completed(failures="+14155551234"), "failures"),
    (completed(failures=["+14155551234"]), r"failures\[0\]"),
    (completed(failures=[{"user_identifier": "a@b.co"}, {"reason": "x"}]), r"failures\[1\]"),
    (completed(failures=[{"user_identifier": 14155551234}]), r"failures\[0\].user_identifier"),
    (issued(issuance_job_id=None), "issuance_job_id"),
    (issued(identifier="email"), "identifier"),
    (issued(identifier={"type": "email", "index": -1}), r"identifier\.index"),
    (issued(identifier={"type": "email", "index": "0"}), r"identifier\.index"),
    (issued(identifier={"type": 1, "index": 0}), r"identifier\.type"),
    (issued(reward_id=["rwd"]), "reward_id"),
]


@pytest.mark.parametrize(("body", "problem"), MALFORMED)
def test_malformed_bodies_raise_a_typed_error(body: bytes, problem: str) -> None:
    """A signed body that cannot be read raises WebhookPayloadError naming the problem."""
    with pytest.raises(WebhookPayloadError, match=problem) as caught:
        parse(body)
    assert isinstance(caught.value, ThanxError)
    assert isinstance(caught.value, ValueError)


def test_payload_errors_do_not_quote_people() -> None:
    """Error messages name fields, never identifier values (they are personal data)."""
    body = completed(failures=[{"user_identifier": "jane.private@example.com", "reason": 3}, 5])
    with pytest.raises(WebhookPayloadError) as caught:
        parse(body)
    assert "jane.private" not in str(caught.value)


def test_signature_is_checked_before_the_body_is_read() -> None:
    """A forged garbage body raises InvalidSignatureError, not a payload error."""
    with pytest.raises(InvalidSignatureError):
        parse_event(b"not json at all", "0" * 64, SECRET)
    with pytest.raises(InvalidSignatureError):
        parse_event(completed(), None, SECRET)


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
_FIELDS = [
    "issuance_job_id", "merchant_id", "state", "total_count", "issued_count", "failed_count",
    "failures", "reward_id", "identifier", "user_id", "expires_at", "campaign",
]  # fmt: skip
_FAILURE = st.fixed_dictionaries({}, optional={"user_identifier": _JSON, "reason": _JSON})


@given(
    event=st.sampled_from(["reward.issued", "reward_batch.completed", "other.event"]),
    data=st.dictionaries(
        st.sampled_from(_FIELDS),
        _JSON
        | st.lists(_FAILURE, max_size=3)
        | st.fixed_dictionaries(
            {}, optional={"type": _JSON, "index": _JSON, "id": _JSON, "variant": _JSON}
        ),
        max_size=8,
    )
    | _JSON,
    timestamp=_JSON,
)
def test_hostile_payloads_never_crash(event: str, data: Any, timestamp: Any) -> None:
    """Whatever the JSON, parsing gives an event or WebhookPayloadError, nothing else."""
    body = orjson.dumps({"event": event, "timestamp": timestamp, "data": data})
    try:
        parsed = parse(body)
    except WebhookPayloadError:
        return
    assert parsed.event == event
    if isinstance(parsed, RewardBatchCompleted):
        assert all(
            isinstance(f.user_identifier, str) and f.user_identifier for f in parsed.failures
        )
        for count in (parsed.total_count, parsed.issued_count, parsed.failed_count):
            assert count is None or (type(count) is int and count >= 0)


@given(st.binary(max_size=64))
def test_arbitrary_bytes_never_crash(body: bytes) -> None:
    """Arbitrary signed bytes give an event or WebhookPayloadError, nothing else."""
    with contextlib.suppress(WebhookPayloadError):
        parse(body)
