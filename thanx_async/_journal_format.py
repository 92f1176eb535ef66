"""The journal's file format and the records it hands to the batcher.

Two tables carry the work: ``items`` (one row per admitted identifier, with
the batch it was sealed into and its position there) and ``batches`` (exact
body bytes and idempotency key, then the job id, then the final job JSON).
``meta`` holds the schema version; ``ratelog`` the rate limiter's recent log.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

__all__ = [
    "SCHEMA",
    "SCHEMA_VERSION",
    "UNREPORTED",
    "Existing",
    "Recorded",
    "Recovered",
    "RecoveredBatch",
    "RecoveredItem",
    "SealRecord",
    "dedupe_column",
    "dedupe_value",
]

SCHEMA_VERSION = 1
#: (idempotency key, body bytes, item row ids in batch order)
SealRecord = tuple[str, bytes, Sequence[int]]

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY,
    merchant_id TEXT NOT NULL,
    campaign_id TEXT NOT NULL,
    variant_id TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    body BLOB NOT NULL,
    size INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('sealed', 'accepted', 'done')),
    job_id TEXT,
    job_json BLOB,
    sealed_at REAL NOT NULL,
    finished_at REAL
);
CREATE INDEX IF NOT EXISTS batches_open ON batches (state) WHERE state != 'done';
CREATE INDEX IF NOT EXISTS batches_finished ON batches (finished_at) WHERE state = 'done';
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY,
    merchant_id TEXT NOT NULL,
    campaign_id TEXT NOT NULL,
    variant_id TEXT NOT NULL,
    value TEXT NOT NULL,
    type TEXT NOT NULL,
    dedupe TEXT NOT NULL,          -- '' for no dedupe key, '=' + key otherwise
    batch_id INTEGER REFERENCES batches (id),
    position INTEGER,
    submitted_at REAL NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS items_key
    ON items (merchant_id, campaign_id, variant_id, value, dedupe);
CREATE INDEX IF NOT EXISTS items_batch ON items (batch_id, position);
CREATE TABLE IF NOT EXISTS ratelog (start REAL NOT NULL, finish REAL);
"""

#: Batches whose end is recorded but whose outcomes were not handed on yet. Added
#: without a version change: an older file gains it at open (nothing to migrate).
UNREPORTED = "CREATE TABLE IF NOT EXISTS unreported (batch_id INTEGER PRIMARY KEY)"


def dedupe_column(dedupe_key: str | None) -> str:
    # NULL cannot take part in a UNIQUE constraint the way we need; encode None as ''.
    return "" if dedupe_key is None else "=" + dedupe_key


def dedupe_value(column: str) -> str | None:
    return None if column == "" else column[1:]


@attrs.frozen
class Recorded:
    """A finished result found in the journal: the batch's final job and a position in it."""

    batch_id: int
    job_json: bytes
    position: int
    size: int


@attrs.frozen
class Existing:
    """The item is already journaled and unfinished (memory should know it)."""

    row_id: int


@attrs.frozen
class RecoveredItem:
    """An unfinished item found at start."""

    row_id: int
    partition: tuple[str, str, str]
    type: str
    value: str
    dedupe_key: str | None


@attrs.frozen
class RecoveredBatch:
    """A sealed batch whose job had not finished when the last process stopped.

    Or one whose end was recorded (``final``, the final job JSON) but whose
    outcomes were never handed to anyone: it is resolved from the record.
    """

    batch_id: int
    partition: tuple[str, str, str]
    key: str
    body: bytes
    job_id: str | None
    items: list[RecoveredItem]
    final: bytes | None = None


@attrs.frozen
class Recovered:
    """Everything unfinished in the journal at start."""

    unsealed: list[RecoveredItem]
    batches: list[RecoveredBatch]
    ratelog: list[tuple[float, float | None]]
