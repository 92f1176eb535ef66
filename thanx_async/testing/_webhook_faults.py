"""Scripted faults of the emulator's webhook deliveries: drop, duplicate, delay, bad signature.

Example:
    >>> faults = WebhookFaults()
    >>> faults.add("reward_batch.completed", drop=True)            # lose the next one
    >>> faults.add("*", duplicate=True, probability=0.1, times=None)  # 10% sent twice
"""

from __future__ import annotations

import random
from typing import Final

import attrs

__all__ = [
    "REWARD_BATCH_COMPLETED",
    "REWARD_ISSUED",
    "WEBHOOK_EVENTS",
    "WebhookFault",
    "WebhookFaults",
]

REWARD_ISSUED: Final = "reward.issued"
REWARD_BATCH_COMPLETED: Final = "reward_batch.completed"
#: Every event the emulator can deliver.
WEBHOOK_EVENTS: Final = (REWARD_ISSUED, REWARD_BATCH_COMPLETED)


@attrs.define(kw_only=True)
class WebhookFault:
    """One scripted delivery fault; see :meth:`WebhookFaults.add`.

    Attributes:
        event: the event it applies to, or ``"*"`` for any.
        drop: the delivery is never sent.
        duplicate: an identical second copy is sent right after it.
        delay: seconds (of the emulator's clock) it is sent late, or ``None``.
        bad_signature: it is signed with a wrong secret.
        probability: the chance it applies to a matching delivery (seeded, so repeatable).
        times: how many more deliveries it applies to (``None``: forever).
    """

    event: str
    drop: bool = False
    duplicate: bool = False
    delay: float | None = None
    bad_signature: bool = False
    probability: float = 1.0
    times: int | None = 1


class WebhookFaults:
    """The scripted faults of the emulator's webhook deliveries, tried in the order added.

    At most one fault applies to a delivery: the first that matches its event
    and wins its draw.

    Args:
        seed: seed of the random draws for faults with a ``probability`` below 1.
    """

    def __init__(self, seed: int = 0) -> None:
        self._rules: list[WebhookFault] = []
        self._random = random.Random(seed)  # noqa: S311 - repeatable test faults, not crypto

    @property
    def pending(self) -> list[WebhookFault]:
        """The faults not used up yet, in order."""
        return list(self._rules)

    def add(
        self,
        event: str = "*",
        *,
        drop: bool = False,
        duplicate: bool = False,
        delay: float | None = None,
        bad_signature: bool = False,
        probability: float = 1.0,
        times: int | None = 1,
    ) -> WebhookFault:
        """Script a fault for the next ``times`` deliveries of ``event`` that it draws.

        Args:
            event: ``"reward.issued"``, ``"reward_batch.completed"`` or ``"*"``.
            drop: never send it (recorded with fault ``"drop"``, no status).
            duplicate: send an identical copy (same bytes, same signature) after it.
            delay: send it this many seconds of the emulator's clock late.
            bad_signature: sign it with a wrong secret (a receiver must answer 401).
            probability: apply to each matching delivery with this chance (0-1];
                draws come from a seeded generator, so a run is repeatable.
            times: how many deliveries it applies to; ``None`` means every one.

        Returns:
            The fault; it leaves :attr:`pending` once used up.

        Raises:
            ValueError: an unknown event, nothing to do, or a value out of range.
        """
        if event != "*" and event not in WEBHOOK_EVENTS:
            raise ValueError(f"unknown webhook event {event!r}; expected one of {WEBHOOK_EVENTS}")
        if not (drop or duplicate or bad_signature or delay is not None):
            raise ValueError("a webhook fault needs drop, duplicate, delay or bad_signature")
        if drop and (duplicate or bad_signature or delay is not None):
            raise ValueError("drop excludes duplicate, delay and bad_signature")
        if delay is not None and not delay >= 0:
            raise ValueError(f"delay must be >= 0, got {delay}")
        if not 0 < probability <= 1:
            raise ValueError(f"probability must be in (0, 1], got {probability}")
        if times is not None and times < 1:
            raise ValueError(f"times must be >= 1 or None, got {times}")
        fault = WebhookFault(
            event=event,
            drop=drop,
            duplicate=duplicate,
            delay=delay,
            bad_signature=bad_signature,
            probability=probability,
            times=times,
        )
        self._rules.append(fault)
        return fault

    def clear(self) -> None:
        """Forget every scripted fault."""
        self._rules.clear()

    def take(self, event: str) -> WebhookFault | None:
        """The first fault that applies to this delivery of ``event``, using up one of its times."""
        for fault in self._rules:
            if fault.event not in ("*", event):
                continue
            if fault.probability < 1 and self._random.random() >= fault.probability:
                continue
            if fault.times is not None:
                fault.times -= 1
                if fault.times == 0:
                    self._rules.remove(fault)
            return fault
        return None
