import asyncio
import os

import thanx_async as ta


async def main() -> None:
    async with ta.ThanxClient.from_env() as client:  # THANX_CLIENT_ID, _ACCESS_TOKEN, _BASE_URL
        batcher = ta.RewardBatcher(
            client,
            merchant_id=os.environ.get("THANX_MERCHANT_ID", "merchant_demo"),
            campaign_id=os.environ.get("THANX_CAMPAIGN_ID", "camp_welcome"),
            variant_id=os.environ.get("THANX_VARIANT_ID", "var_welcome_treat"),
        )
        async with batcher:  # on exit: send what is batched, wait for the outcomes
            people = ["jane@example.com", "+14155551234", "unknown.sam@example.com"]
            outcomes = await asyncio.gather(*(batcher.issue(p) for p in people))
    for outcome in outcomes:  # one batch, one request, one outcome per person
        print(outcome.identifier, outcome.status.value, outcome.job_id, outcome.error or "")


asyncio.run(main())
