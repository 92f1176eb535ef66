"""Application code under test: reward new members when they sign up."""

from __future__ import annotations

import thanx_async as ta


class SignupRewards:
    """Gives every new member the welcome reward, once per signup event."""

    def __init__(self, batcher: ta.RewardBatcher) -> None:
        self.batcher = batcher

    async def on_signup(self, email: str, event_id: str) -> ta.IssuanceOutcome | None:
        """Reward a new member; None when the email is not valid (nothing is sent)."""
        try:
            return await self.batcher.issue(email, dedupe_key=event_id)
        except ta.InvalidIdentifierError:
            return None
