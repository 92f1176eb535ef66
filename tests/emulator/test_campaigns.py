"""GET /partner/campaigns (pagination) and GET /partner/campaigns/{id}."""

from __future__ import annotations

import pytest

from tests.emulator.conftest import Api
from thanx_async.testing import DEFAULT_CAMPAIGN_ID, DEFAULT_MERCHANT_ID, EmulatorState, Variant

CAMPAIGN_FIELDS = {
    "id", "name", "objective", "fine_print", "start_at", "end_at", "redeemable_from",
    "redeemable_to", "time_zone", "variants",
}  # fmt: skip


async def _list(api: Api, **params: str) -> tuple[int, object]:
    answer = await api.request("GET", "/partner/campaigns", params=params)
    return answer.status, answer.json


async def test_seeded_campaigns_have_the_documented_shape(api: Api) -> None:
    """The default merchant lists three full campaigns, one with a null-template control variant."""
    status, body = await _list(api, merchant_id=DEFAULT_MERCHANT_ID)
    assert status == 200
    assert isinstance(body, dict)
    campaigns = body["campaigns"]
    assert len(campaigns) == 3
    assert all(set(campaign) == CAMPAIGN_FIELDS for campaign in campaigns)
    assert all(2 <= len(campaign["variants"]) <= 3 for campaign in campaigns)
    templates = [v["reward_template_id"] for c in campaigns for v in c["variants"]]
    assert None in templates
    assert body["pagination"] == {"current_page": 1, "per_page": 10, "total_pages": 1}


async def test_pagination_walks_every_campaign(api: Api, state: EmulatorState) -> None:
    """per_page and page slice the list in order; total_pages is the ceiling."""
    for n in range(8):
        state.add_campaign(DEFAULT_MERCHANT_ID, f"camp_extra_{n}")
    seen: list[str] = []
    for page in (1, 2, 3, 4):
        status, body = await _list(
            api, merchant_id=DEFAULT_MERCHANT_ID, page=str(page), per_page="3"
        )
        assert status == 200
        assert isinstance(body, dict)
        assert body["pagination"] == {"current_page": page, "per_page": 3, "total_pages": 4}
        seen += [campaign["id"] for campaign in body["campaigns"]]
    assert len(seen) == 11
    assert seen[0] == DEFAULT_CAMPAIGN_ID
    assert seen[-1] == "camp_extra_7"


async def test_page_past_the_end_is_empty(api: Api) -> None:
    """A page after the last one is an empty list, not an error."""
    status, body = await _list(api, merchant_id=DEFAULT_MERCHANT_ID, page="9")
    assert status == 200
    assert isinstance(body, dict)
    assert body["campaigns"] == []


@pytest.mark.parametrize(
    "params",
    [{}, {"per_page": "0"}, {"per_page": "101"}, {"per_page": "ten"}, {"page": "0"}],
    ids=["no-merchant", "per-page-0", "per-page-101", "per-page-text", "page-0"],
)
async def test_bad_listing_parameters_are_400(api: Api, params: dict[str, str]) -> None:
    """merchant_id is required; per_page must be 1..100 and page at least 1."""
    if params:
        params = {"merchant_id": DEFAULT_MERCHANT_ID, **params}
    status, body = await _list(api, **params)
    assert status == 400
    assert isinstance(body, dict)
    assert body["error"]["code"] == "BAD_REQUEST"


async def test_per_page_100_is_allowed(api: Api) -> None:
    """per_page=100 is the largest page."""
    status, _ = await _list(api, merchant_id=DEFAULT_MERCHANT_ID, per_page="100")
    assert status == 200


async def test_unknown_merchant_listing_is_404(api: Api) -> None:
    """Listing an unknown merchant's campaigns is 404."""
    status, _ = await _list(api, merchant_id="merchant_nope")
    assert status == 404


async def test_merchant_without_campaigns_lists_nothing(api: Api, state: EmulatorState) -> None:
    """A merchant with no campaigns has one empty page."""
    state.add_merchant("merchant_empty")
    status, body = await _list(api, merchant_id="merchant_empty")
    assert (status, body) == (
        200,
        {"campaigns": [], "pagination": {"current_page": 1, "per_page": 10, "total_pages": 1}},
    )


async def test_get_campaign(api: Api, state: EmulatorState) -> None:
    """GET /partner/campaigns/{id} answers the campaign with its variants."""
    state.add_campaign(
        "merchant_x",
        "camp_x",
        name="X",
        variants=[Variant(id="var_x", name="X", reward_template_id=None)],
        time_zone="UTC",
    )
    answer = await api.request("GET", "/partner/campaigns/camp_x")
    assert answer.status == 200
    campaign = answer.json["campaign"]
    assert set(campaign) == CAMPAIGN_FIELDS
    assert (campaign["name"], campaign["time_zone"]) == ("X", "UTC")
    assert campaign["variants"] == [{"id": "var_x", "name": "X", "reward_template_id": None}]


async def test_unknown_campaign_is_404(api: Api) -> None:
    """An unknown campaign id is 404 RESOURCE_NOT_FOUND."""
    answer = await api.request("GET", "/partner/campaigns/camp_nope")
    assert (answer.status, answer.code) == (404, "RESOURCE_NOT_FOUND")


def test_duplicate_campaign_id_is_refused(state: EmulatorState) -> None:
    """Campaign ids are global: adding one twice is an error."""
    with pytest.raises(ValueError, match="already exists"):
        state.add_campaign("merchant_other_2", DEFAULT_CAMPAIGN_ID)
