"""The emulator's merchants, campaigns and variants, seeded with a small demo catalogue."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import attrs

__all__ = [
    "DEFAULT_CAMPAIGN_ID",
    "DEFAULT_MERCHANT_ID",
    "DEFAULT_VARIANT_ID",
    "OTHER_CAMPAIGN_ID",
    "OTHER_MERCHANT_ID",
    "Campaign",
    "Catalog",
    "Variant",
]

#: The merchant every seeded campaign except one belongs to.
DEFAULT_MERCHANT_ID = "merchant_demo"
#: A seeded campaign of :data:`DEFAULT_MERCHANT_ID`.
DEFAULT_CAMPAIGN_ID = "camp_welcome"
#: A variant (with a reward template) of :data:`DEFAULT_CAMPAIGN_ID`.
DEFAULT_VARIANT_ID = "var_welcome_treat"
#: A second seeded merchant, so tests can send a campaign to the wrong merchant.
OTHER_MERCHANT_ID = "merchant_other"
#: The one campaign of :data:`OTHER_MERCHANT_ID`.
OTHER_CAMPAIGN_ID = "camp_other_launch"


@attrs.frozen(kw_only=True)
class Variant:
    """One variant of a campaign.

    Attributes:
        id: the variant id sent as ``variant_id``.
        name: a human name.
        reward_template_id: the reward given, or ``None`` for a control variant.
    """

    id: str
    name: str
    reward_template_id: str | None

    def to_json(self) -> dict[str, Any]:
        """The variant as the API serialises it."""
        return {"id": self.id, "name": self.name, "reward_template_id": self.reward_template_id}


@attrs.frozen(kw_only=True)
class Campaign:
    """A campaign as the API describes it, plus the merchant that owns it.

    Attributes:
        id: the campaign id.
        merchant_id: the owning merchant (not part of the JSON shape).
        name: human name.
        objective: what the campaign is for (free text on Thanx's side).
        fine_print: terms shown to the user.
        start_at: ISO 8601 start.
        end_at: ISO 8601 end, or ``None`` for an open-ended campaign.
        redeemable_from: ISO 8601, or ``None``.
        redeemable_to: ISO 8601, or ``None``.
        time_zone: IANA time zone name.
        variants: the campaign's variants, in order.
    """

    id: str
    merchant_id: str
    name: str
    objective: str = "custom"
    fine_print: str = "One reward per guest. Cannot be combined with other offers."
    start_at: str = "2024-01-01T00:00:00Z"
    end_at: str | None = None
    redeemable_from: str | None = "2024-01-01T00:00:00Z"
    redeemable_to: str | None = None
    time_zone: str = "America/Los_Angeles"
    variants: tuple[Variant, ...] = ()

    def variant_ids(self) -> frozenset[str]:
        """The ids of this campaign's variants."""
        return frozenset(variant.id for variant in self.variants)

    def to_json(self) -> dict[str, Any]:
        """The campaign as the API serialises it (documented fields only)."""
        return {
            "id": self.id,
            "name": self.name,
            "objective": self.objective,
            "fine_print": self.fine_print,
            "start_at": self.start_at,
            "end_at": self.end_at,
            "redeemable_from": self.redeemable_from,
            "redeemable_to": self.redeemable_to,
            "time_zone": self.time_zone,
            "variants": [variant.to_json() for variant in self.variants],
        }


def _as_variant(spec: Variant | str) -> Variant:
    if isinstance(spec, Variant):
        return spec
    return Variant(id=spec, name=spec.replace("_", " ").title(), reward_template_id=f"rt_{spec}")


class Catalog:
    """Merchants and their campaigns, in insertion order (the listing order)."""

    def __init__(self) -> None:
        self.merchants: dict[str, list[Campaign]] = {}
        self.campaigns: dict[str, Campaign] = {}

    def add_merchant(self, merchant_id: str) -> None:
        """Register a merchant (no-op if it exists)."""
        self.merchants.setdefault(merchant_id, [])

    def add_campaign(
        self,
        merchant_id: str,
        campaign_id: str,
        *,
        variants: Iterable[Variant | str] | None = None,
        name: str | None = None,
        **fields: Any,
    ) -> Campaign:
        """Add a campaign; see :meth:`EmulatorState.add_campaign`."""
        if campaign_id in self.campaigns:
            raise ValueError(f"campaign {campaign_id!r} already exists")
        specs: Sequence[Variant | str] = (
            [f"{campaign_id}_variant"] if variants is None else list(variants)
        )
        campaign = Campaign(
            id=campaign_id,
            merchant_id=merchant_id,
            name=name or campaign_id.replace("_", " ").title(),
            variants=tuple(_as_variant(spec) for spec in specs),
            **fields,
        )
        self.add_merchant(merchant_id)
        self.merchants[merchant_id].append(campaign)
        self.campaigns[campaign_id] = campaign
        return campaign

    def seed(self) -> None:
        """Add the demo catalogue the ``DEFAULT_*`` constants refer to."""
        self.add_campaign(
            DEFAULT_MERCHANT_ID,
            DEFAULT_CAMPAIGN_ID,
            name="Welcome Treat",
            objective="welcome",
            fine_print="Valid on a first order. One per guest.",
            end_at="2030-12-31T23:59:59Z",
            redeemable_to="2031-01-31T23:59:59Z",
            variants=[
                Variant(id=DEFAULT_VARIANT_ID, name="Free cookie", reward_template_id="rt_cookie"),
                Variant(id="var_welcome_discount", name="10% off", reward_template_id="rt_10_off"),
                Variant(id="var_welcome_control", name="Control", reward_template_id=None),
            ],
        )
        self.add_campaign(
            DEFAULT_MERCHANT_ID,
            "camp_birthday",
            name="Birthday Reward",
            objective="birthday",
            fine_print="Redeemable within 30 days of your birthday.",
            variants=[
                Variant(
                    id="var_birthday_dessert", name="Free dessert", reward_template_id="rt_dessert"
                ),
                Variant(id="var_birthday_drink", name="Free drink", reward_template_id="rt_drink"),
            ],
        )
        self.add_campaign(
            DEFAULT_MERCHANT_ID,
            "camp_winback",
            name="We Miss You",
            objective="winback",
            fine_print="For guests who have not visited in 60 days.",
            start_at="2024-03-01T00:00:00Z",
            end_at="2025-03-01T00:00:00Z",
            time_zone="America/New_York",
            variants=[
                Variant(id="var_winback_5_off", name="$5 off", reward_template_id="rt_5_off"),
                Variant(id="var_winback_points", name="Double points", reward_template_id="rt_2x"),
                Variant(id="var_winback_control", name="Control", reward_template_id=None),
            ],
        )
        self.add_campaign(
            OTHER_MERCHANT_ID,
            OTHER_CAMPAIGN_ID,
            name="Grand Opening",
            objective="intro",
            variants=[Variant(id="var_launch_gift", name="Gift", reward_template_id="rt_gift")],
        )
