"""The batcher's data: partitions, pending entries, open and sealed batches.

Kept apart from the batcher's control flow (``_batcher.py``) so the shapes that
carry one identifier from submit to outcome are plain and cheap: an entry is
one identifier with its pre-encoded JSON and the futures of its callers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import attrs
import orjson

from thanx_async._identifiers import Identifier, canonical_batch, key_from_canonical

__all__ = ["Entry", "EntryKey", "OpenBatch", "Partition", "SealedBatch", "seal"]


@attrs.frozen(slots=True)
class Partition:
    """Where identifiers go: one merchant, campaign and variant."""

    merchant_id: str
    campaign_id: str
    variant_id: str
    body_prefix: bytes = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        head = orjson.dumps(
            {
                "merchant_id": self.merchant_id,
                "campaign_id": self.campaign_id,
                "variant_id": self.variant_id,
            }
        )
        # '{"merchant_id":...,"variant_id":"v"' + ',"identifiers":[' ... ']}'
        object.__setattr__(self, "body_prefix", head[:-1] + b',"identifiers":[')

    @property
    def ids(self) -> tuple[str, str, str]:
        """(merchant_id, campaign_id, variant_id)."""
        return (self.merchant_id, self.campaign_id, self.variant_id)


#: What makes two submissions the same issuance: partition, normalised value, dedupe key.
#: (The value alone tells the type apart: phones never contain '@', emails always do.)
EntryKey = tuple[Partition, str, str | None]


class Entry:
    """One unresolved identifier of a partition and the callers waiting for it."""

    __slots__ = (
        "callers", "dedupe_key", "durable", "encoded", "identifier", "key", "pinned", "row_id",
        "sealed",
    )  # fmt: skip

    def __init__(self, key: EntryKey, identifier: Identifier, dedupe_key: str | None) -> None:
        self.key = key
        self.identifier = identifier
        self.dedupe_key = dedupe_key
        # Encoded once at submit so sealing 10,000 is a join, not a serialisation.
        self.encoded = orjson.dumps({"type": identifier.type, "value": identifier.value})
        self.callers: list[asyncio.Future[Any]] = []
        self.sealed = False
        #: Journal row id (journal only).
        self.row_id: int | None = None
        #: Resolves when the journal committed the admission (journal only).
        self.durable: asyncio.Future[Any] | None = None
        #: Recovered from the journal: an earlier caller was promised it, so a
        #: resubmitter's cancellation must not take it out of its batch.
        self.pinned = False


class OpenBatch:
    """The one batch of a partition still taking identifiers, in submission order."""

    __slots__ = ("entries", "opened_at", "partition", "timer")

    def __init__(self, partition: Partition, opened_at: float) -> None:
        self.partition = partition
        self.opened_at = opened_at
        self.entries: dict[EntryKey, Entry] = {}
        self.timer: asyncio.Handle | None = None


@attrs.define(eq=False)
class SealedBatch:
    """A batch whose content is final: exact body bytes and idempotency key.

    ``batch_id`` is its journal row (journal only); ``job_id`` is known when a
    batch recovered from the journal had already been accepted.
    """

    partition: Partition
    entries: Sequence[Entry]
    body: bytes
    key: str
    batch_id: int | None = None
    job_id: str | None = None


def seal(partition: Partition, entries: Sequence[Entry], namespace: str) -> SealedBatch:
    """Freeze entries into a batch: mark them sealed, build the body and the key."""
    for entry in entries:
        entry.sealed = True
    body = partition.body_prefix + b",".join([e.encoded for e in entries]) + b"]}"
    canonical = canonical_batch(
        merchant_id=partition.merchant_id,
        campaign_id=partition.campaign_id,
        variant_id=partition.variant_id,
        identifiers=[e.identifier for e in entries],
        dedupe_keys=[e.dedupe_key for e in entries],
        namespace=namespace,
    )
    return SealedBatch(partition, entries, body, key_from_canonical(canonical))
