"""Parsing what the API returns: both public job shapes, tolerance, typed failures."""

from __future__ import annotations

import orjson
import pytest

import thanx_async as ta
from thanx_async._serde import DecodeError, read_campaign, read_campaign_page, read_job, read_scopes

DOCUMENTED_JOB = {
    "id": "job_1",
    "campaign_id": "camp_abc123",
    "variant_id": "var_treat1",
    "state": "completed",
    "total_count": 3,
    "processed_count": 3,
    "success_count": 2,
    "failure_count": 1,
    "progress_percent": 100,
    "created_at": "2024-05-01T12:00:00Z",
    "started_at": "2024-05-01T12:00:01Z",
    "completed_at": "2024-05-01T12:00:02Z",
    "summary": {
        "success_count": 2,
        "failure_count": 1,
        "failures": [
            {"identifier_index": 1, "identifier_type": "phone", "error": "User not found"}
        ],
    },
}


def wrap(job: dict[str, object]) -> bytes:
    return orjson.dumps({"issuance_job": job})


def test_documented_job_shape_parses_fully() -> None:
    """The documented job, summary and failures parse into typed models."""
    job = read_job(wrap(DOCUMENTED_JOB))
    assert job.state is ta.JobState.COMPLETED
    assert job.is_terminal
    assert job.summary is not None
    assert job.summary.failures == (
        ta.IssuanceFailure(identifier_index=1, identifier_type="phone", error="User not found"),
    )
    assert job.created_at is not None
    assert job.created_at.year == 2024


def test_alternative_job_shape_parses_without_crashing() -> None:
    """The derived-spec shape (requested/issued/failed counts, no summary) maps onto the model."""
    job = read_job(
        wrap(
            {
                "id": "job_2",
                "state": "processing",
                "requested_count": 10,
                "issued_count": 4,
                "failed_count": 1,
                "updated_at": "2024-05-01T12:00:00Z",
            }
        )
    )
    assert (job.total_count, job.success_count, job.failure_count) == (10, 4, 1)
    assert job.summary is None
    assert not job.is_terminal


def test_unknown_state_keeps_its_raw_value() -> None:
    """A state the SDK has never seen parses, keeps the raw string and is not terminal."""
    job = read_job(wrap({"id": "j", "state": "archived"}))
    assert job.state.value == "archived"
    assert not job.state.known
    assert not job.is_terminal


def test_unknown_fields_and_nulls_are_tolerated() -> None:
    """Unknown keys are ignored and nulls for optional fields take the defaults."""
    job = read_job(
        wrap(
            {
                "id": "j",
                "state": "pending",
                "new_field": [1],
                "started_at": None,
                "total_count": None,
            }
        )
    )
    assert job.total_count == 0
    assert job.started_at is None


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b'{"issuance_job": null}',
        b'{"issuance_job": {"state": "pending"}}',
        b'{"issuance_job": {"id": 7, "state": "pending"}}',
        b'{"issuance_job": {"id": "j", "state": null}}',
        b"[]",
        b'{"issuance_job": {"id": "j", "state": "completed"',
    ],
)
def test_unusable_job_bodies_raise_decode_error(body: bytes) -> None:
    """Bodies without a usable job raise DecodeError rather than crashing."""
    with pytest.raises(DecodeError):
        read_job(body)


def test_campaign_page_accepts_total_page_alias() -> None:
    """Pagination parses with either total_pages or the total_page spelling."""
    body = orjson.dumps(
        {
            "campaigns": [
                {
                    "id": "c1",
                    "name": "Welcome",
                    "start_at": "2024-01-01T00:00:00-05:00",
                    "variants": [{"id": "v1", "name": "Control", "reward_template_id": None}],
                }
            ],
            "pagination": {"current_page": 1, "per_page": 10, "total_page": 3},
        }
    )
    campaigns, page = read_campaign_page(body)
    assert page.total_pages == 3
    assert campaigns[0].variants[0] == ta.Variant(id="v1", name="Control", reward_template_id=None)


def test_campaign_and_scopes_read() -> None:
    """A single campaign and the scope list parse; a wrong scopes shape is a DecodeError."""
    campaign = read_campaign(orjson.dumps({"campaign": {"id": "c", "variants": []}}))
    assert campaign.id == "c"
    assert read_scopes(b'{"scopes": ["rewards.issue"]}') == ["rewards.issue"]
    with pytest.raises(DecodeError):
        read_scopes(b'{"scopes": "rewards.issue"}')


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("total_count", "many"),
        ("success_count", 1.9),
        ("failure_count", True),
        ("summary", [1]),
        ("summary", {"failures": "none"}),
        ("summary", {"failures": [{"identifier_index": 1.9}]}),
        ("summary", {"failures": [{"identifier_index": True}]}),
        ("summary", {"failures": [{"identifier_index": "2"}]}),
        ("summary", {"failures": ["x"]}),
        ("summary", {"success_count": "2", "failures": []}),
    ],
)
def test_unreadable_evidence_is_named_not_guessed(field: str, value: object) -> None:
    """A count or summary of the wrong JSON type is named in `unreadable`, never coerced."""
    job = read_job(wrap({**DOCUMENTED_JOB, field: value}))
    assert job.id == "job_1"
    assert job.state is ta.JobState.COMPLETED
    assert job.unreadable is not None
    assert field in job.unreadable


def test_informative_fields_that_are_unreadable_are_just_absent() -> None:
    """Bad timestamps, names or progress do not make a job unreadable: they are not evidence."""
    job = read_job(
        wrap(
            {
                **DOCUMENTED_JOB,
                "created_at": "yesterday",
                "started_at": 12,
                "campaign_id": ["c"],
                "progress_percent": "100%",
            }
        )
    )
    assert job.unreadable is None
    assert (job.created_at, job.started_at, job.campaign_id, job.progress_percent) == (
        None,
        None,
        None,
        0,
    )
