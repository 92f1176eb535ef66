"""The batcher's data: partitions, pending entries, open and sealed batches.

Kept apart from the batcher's control flow (``_batcher.py``) so the shapes that
carry one identifier from submit to outcome are plain and cheap. An entry is
what a pending identifier costs, so it is lean: it is its first caller's
future, with the normalised value and a few flag bits in slots (other
callers' futures in a list only when callers coalesce).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Sequence
from typing import Any

import attrs
import orjson

from thanx_async._identifiers import (
    Identifier,
    IdentifierType,
    canonical_head,
    canonical_item,
    key_from_digest,
)

__all__ = [
    "Admission",
    "Entry",
    "EntryKey",
    "OpenBatch",
    "Partition",
    "SealedBatch",
    "freeze",
    "needs_escaping",
    "seal",
]

#: Identifiers whose body and key text are built per loop turn while freezing a batch.
FREEZE_SLICE = 1_000

# What a JSON string may not contain unescaped.
_NEEDS_ESCAPING = re.compile(r'["\\\x00-\x1f]')
HAS_CALLER, _PINNED, _PHONE, _ESCAPE = 1, 2, 4, 8
_future_init = asyncio.Future.__init__


@attrs.frozen(slots=True, eq=False)
class Partition:
    """Where identifiers go: one merchant, campaign and variant.

    Compared and hashed by identity: a batcher keeps one instance per
    (merchant, campaign, variant), and identity hashing is C-fast on the
    submit path where a generated ``__hash__`` was a measurable cost.
    """

    merchant_id: str
    campaign_id: str
    variant_id: str
    body_prefix: bytes = attrs.field(init=False, eq=False, repr=False)
    #: (merchant_id, campaign_id, variant_id), kept so hot paths do not rebuild it.
    ids: tuple[str, str, str] = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        head = orjson.dumps(
            {
                "merchant_id": self.merchant_id,
                "campaign_id": self.campaign_id,
                "variant_id": self.variant_id,
            }
        )
        # '{"merchant_id":...,"variant_id":"v"' + ',"identifiers":[' ... ']}'
        object.__setattr__(self, "body_prefix", bytes(head[:-1]) + b',"identifiers":[')
        object.__setattr__(self, "ids", (self.merchant_id, self.campaign_id, self.variant_id))


def needs_escaping(value: str) -> bool:
    """Whether JSON text must escape part of ``value``.

    Never true of a validated value; only an :class:`Identifier` built by hand,
    bypassing validation, can need it.
    """
    return _NEEDS_ESCAPING.search(value) is not None


#: What makes two submissions to one partition the same issuance: the normalised
#: value, with the dedupe key when there is one. (The value alone tells the type:
#: phones never contain '@', emails always do.)
EntryKey = str | tuple[str, str]


class Entry(asyncio.Future[Any]):
    """One unresolved identifier of a partition, and the future of its first caller.

    The entry *is* the future ``submit()`` returned to the caller who brought
    it: one object (and one object for the garbage collector to track) per
    pending identifier instead of two. Later callers of the same identifier
    get futures of their own (``more``). An entry recovered from the journal,
    or detached from its callers, has no caller of its own (no ``HAS_CALLER`` flag).
    """

    __slots__ = ("dedupe_key", "durable", "flags", "more", "partition", "row_id", "value")

    def __init__(
        self,
        partition: Partition,
        type_: IdentifierType,
        value: str,
        dedupe_key: str | None,
        *,
        escape: bool = False,
        caller: bool = True,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        """A new entry, pending (and, unless ``caller`` is False, a caller's future).

        ``escape``: the value has characters JSON must escape (see
        :func:`needs_escaping`); ``caller``: False for a journal recovery, which
        nobody in this process awaits.
        """
        _future_init(self, loop=loop)
        self.partition = partition
        self.value = value
        self.dedupe_key = dedupe_key
        flags = _PHONE if type_ == "phone" else 0
        if escape:
            flags |= _ESCAPE
        if caller:
            flags |= HAS_CALLER
        self.flags = flags
        self.more: list[asyncio.Future[Any]] | None = None
        #: Journal row id (journal only).
        self.row_id: int | None = None
        #: The journal write that admits it (journal only).
        self.durable: Admission | None = None

    @property
    def key(self) -> EntryKey:
        """The entry's key within its partition."""
        return self.value if self.dedupe_key is None else (self.value, self.dedupe_key)

    @property
    def type(self) -> IdentifierType:
        """``email`` or ``phone``."""
        return "phone" if self.flags & _PHONE else "email"

    @property
    def identifier(self) -> Identifier:
        """The normalised identifier (built on demand: entries do not keep one)."""
        return Identifier(self.type, self.value)

    def pin(self) -> None:
        """Mark the entry as promised by an earlier process."""
        self.flags |= _PINNED

    def add_caller(self, future: asyncio.Future[Any]) -> None:
        """Another caller waits for this identifier."""
        if self.more is None:
            self.more = [future]
        else:
            self.more.append(future)

    def callers(self) -> list[asyncio.Future[Any]]:
        """Every caller's future (the entry itself first, if it is one)."""
        own: list[asyncio.Future[Any]] = [self] if self.flags & HAS_CALLER else []
        return own if self.more is None else [*own, *self.more]

    def clear_callers(self) -> None:
        """Forget the callers (the entry itself goes on)."""
        self.flags &= ~HAS_CALLER
        self.more = None

    def wanted(self) -> bool:
        """Whether a caller still waits for it (or an earlier process was promised it)."""
        if self.flags & _PINNED:
            return True
        if self.flags & HAS_CALLER and not self.cancelled():
            return True
        return self.more is not None and any(not f.cancelled() for f in self.more)

    def json(self) -> str:
        """``{"type":...,"value":...}`` as compact JSON text."""
        if self.flags & _ESCAPE:
            return json.dumps({"type": self.type, "value": self.value}, separators=(",", ":"))
        # Validated values need no escaping.
        return f'{{"type":"{self.type}","value":"{self.value}"}}'


class Admission:
    """One loop turn's journal admissions: one write, then every submitter resumes.

    Each waiting ``submit()`` parks its own future in ``waiters`` (cancelling
    one submitter must not cancel the others' wait); ``done`` is for whoever
    waits for all admissions (``flush``/``aclose``).
    """

    __slots__ = ("done", "waiters")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.done: asyncio.Future[None] = loop.create_future()
        self.waiters: list[asyncio.Future[None]] = []

    def wait(self) -> asyncio.Future[None]:
        """A future of this admission's end, for one submitter."""
        waiter: asyncio.Future[None] = self.done.get_loop().create_future()
        self.waiters.append(waiter)
        return waiter

    def finish(self, error: BaseException | None) -> None:
        """The write is answered: resume every submitter (with the error, if it failed)."""
        if not self.done.done():
            self.done.set_result(None)
        for waiter in self.waiters:
            if not waiter.done():
                if error is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(error)
        self.waiters.clear()


class OpenBatch:
    """The one batch of a partition still taking identifiers, in submission order."""

    __slots__ = ("entries", "opened_at", "partition", "timer")

    def __init__(self, partition: Partition, opened_at: float) -> None:
        self.partition = partition
        self.opened_at = opened_at
        self.entries: list[Entry] = []
        self.timer: asyncio.Handle | None = None


@attrs.define(eq=False)
class SealedBatch:
    """A batch whose membership is final.

    ``body`` and ``key`` are built by :func:`freeze` (or come from the journal);
    ``batch_id`` is its journal row (journal only); ``job_id`` is known when a
    batch recovered from the journal had already been accepted.
    """

    partition: Partition
    #: Emptied slice by slice as the batch is resolved.
    entries: list[Entry]
    body: bytes | None = None
    key: str | None = None
    batch_id: int | None = None
    job_id: str | None = None
    #: Each entry's position in the batch it was first sealed into (after a split).
    origin: list[int] | None = None


def seal(partition: Partition, entries: Sequence[Entry]) -> tuple[SealedBatch | None, list[Entry]]:
    """Fix a batch's membership: the entries somebody still wants, in order.

    Returns the batch (None if nobody wants any entry any more) and the entries
    left out because every caller cancelled them before the seal.
    """
    # The common case inline (its own caller, still waiting); wanted() decides the rest.
    kept = [e for e in entries if (e.flags & HAS_CALLER and not e.cancelled()) or e.wanted()]
    dropped = [] if len(kept) == len(entries) else [e for e in entries if not e.wanted()]
    return (SealedBatch(partition, kept) if kept else None), dropped


async def freeze(sealed: SealedBatch, namespace: str) -> None:
    """Build a sealed batch's body bytes and idempotency key, yielding to the loop between slices.

    The key is :func:`~thanx_async.idempotency_key` of the batch's content,
    computed from the same canonical text.
    """
    entries = sealed.entries
    partition = sealed.partition
    head = canonical_head(
        merchant_id=partition.merchant_id,
        campaign_id=partition.campaign_id,
        variant_id=partition.variant_id,
        namespace=namespace,
        count=len(entries),
    )
    # Hashed and encoded slice by slice, so no step handles the whole batch at once.
    hasher = hashlib.sha256(head.encode())
    pieces: list[bytes] = []
    for start in range(0, len(entries), FREEZE_SLICE):
        if start:
            await asyncio.sleep(0)
        bodies: list[str] = []
        texts: list[str] = []
        for entry in entries[start : start + FREEZE_SLICE]:
            value = entry.value
            if entry.dedupe_key is None and not entry.flags & _ESCAPE:
                # Inlined Entry.json() and canonical_item() for the common case;
                # "email" and "phone" are both five characters long.
                type_ = "phone" if entry.flags & _PHONE else "email"
                bodies.append(f'{{"type":"{type_}","value":"{value}"}}')
                texts.append(f"5:{type_},{len(value)}:{value},-")
            else:
                bodies.append(entry.json())
                texts.append(canonical_item(entry.type, value, entry.dedupe_key))
        pieces.append(",".join(bodies).encode())
        hasher.update("".join(texts).encode())
    sealed.body = partition.body_prefix + b",".join(pieces) + b"]}"
    sealed.key = key_from_digest(hasher.digest())
