"""What RedisJournal sends to its scripts and how it reads their replies.

Pure functions, no I/O: the key of an identifier, the arguments of an
admission, and the records (:class:`Recorded`, :class:`Existing`,
:class:`RecoveredItem`, :class:`RecoveredBatch`) built from script replies.
Replies may come as ``bytes`` or ``str`` (a client passed in may decode
responses); both are read alike.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import orjson

from thanx_async._journal_format import Existing, Recorded, RecoveredBatch, RecoveredItem
from thanx_async._journal_protocol import AdmitItem

__all__ = [
    "UNFINISHED",
    "Answer",
    "Unfinished",
    "admit_args",
    "answers",
    "key_prefix",
    "partition_arg",
    "recovered_batch",
    "recovered_item",
    "text",
    "to_bytes",
]


class Unfinished:
    """A watched item that has not ended yet."""


#: The one :class:`Unfinished`.
UNFINISHED = Unfinished()

#: One item's answer: its new id, Existing, Recorded, or (for a watch) None: it
#: is gone, or UNFINISHED.
Answer = int | Existing | Recorded | Unfinished | None

_PREFIX = "thanx_async:journal"


def key_prefix(name: str) -> str:
    """``thanx_async:journal:{<name>}:``: every key of the journal starts with it."""
    return f"{_PREFIX}:{{{name}}}:"


def text(value: Any) -> str:
    """A reply element as ``str``."""
    return value.decode() if isinstance(value, bytes) else str(value)


def to_bytes(value: Any) -> bytes:
    """A reply element as ``bytes`` (exactly what was stored)."""
    return value if isinstance(value, bytes) else str(value).encode()


def partition_arg(partition: Sequence[str]) -> bytes:
    """A partition as stored: the JSON array of its three ids."""
    merchant, campaign, variant = partition
    return orjson.dumps([str(merchant), str(campaign), str(variant)])


def admit_args(items: Sequence[AdmitItem]) -> list[bytes | str]:
    """Per item: its key's digest and its identity (what recovery rebuilds it from).

    Raises:
        TypeError, ValueError: an item is not (partition, type, value, dedupe key)
            of strings.
    """
    args: list[bytes | str] = []
    for partition, type_, value, dedupe_key in items:
        if not isinstance(type_, str) or not isinstance(value, str):
            raise TypeError(f"an identifier's type and value must be str, not {value!r}")
        if dedupe_key is not None and not isinstance(dedupe_key, str):
            raise TypeError(f"a dedupe key must be str or None, not {dedupe_key!r}")
        merchant, campaign, variant = (str(p) for p in partition)
        # The key, as the SQLite journal's unique index: partition, value, dedupe key.
        key = orjson.dumps([merchant, campaign, variant, value, dedupe_key])
        digest = hashlib.sha256(key).hexdigest()[:32]
        args += (digest, orjson.dumps([merchant, campaign, variant, type_, value, dedupe_key]))
    return args


def answers(reply: Sequence[Any]) -> list[Answer]:
    """Decode ``{answers, bid, job_json, size, ...}`` (see ``with_batches`` in the scripts)."""
    jobs: dict[str, tuple[bytes, int]] = {}
    for i in range(1, len(reply), 3):
        jobs[text(reply[i])] = (to_bytes(reply[i + 1]), int(reply[i + 2]))
    out: list[Answer] = []
    encoded = text(reply[0])
    for answer in encoded.split(",") if encoded else ():
        kind, rest = answer[0], answer[1:]
        if kind == "n":
            out.append(int(rest))
        elif kind == "e":
            out.append(Existing(int(rest)))
        elif kind == "r":
            batch, position = rest.split(":")
            job_json, size = jobs[batch]
            if not job_json:  # expired between the answer and its reading: unlikely
                out.append(None)
            else:
                out.append(Recorded(int(batch), job_json, int(position), size))
        elif kind == "x":
            out.append(None)
        else:  # 'w': still unfinished
            out.append(UNFINISHED)
    return out


def recovered_item(fields: Sequence[Any]) -> RecoveredItem:
    """``{id, identity}`` as a :class:`RecoveredItem`."""
    item_id, identity = fields
    merchant, campaign, variant, type_, value, dedupe_key = orjson.loads(to_bytes(identity))
    return RecoveredItem(int(item_id), (merchant, campaign, variant), type_, value, dedupe_key)


def recovered_batch(fields: Sequence[Any]) -> RecoveredBatch:
    """``{id, partition, key, body, job id, {items}[, final]}`` as a :class:`RecoveredBatch`.

    The 7th field, the final job JSON, is there for a finished batch not yet reported.
    """
    batch_id, where, key, body, job_id, items, *rest = fields
    merchant, campaign, variant = orjson.loads(to_bytes(where))
    final = to_bytes(rest[0]) if rest else None
    job = text(job_id) or (_job_id(final) if final is not None else "")
    return RecoveredBatch(
        int(batch_id),
        (merchant, campaign, variant),
        text(key),
        to_bytes(body),
        job or None,
        [recovered_item(item) for item in items],
        final,
    )


def _job_id(job_json: bytes) -> str:
    """The ``id`` of a final job JSON ('' if it has none): for a batch that ended unaccepted."""
    try:
        job = orjson.loads(job_json)
    except orjson.JSONDecodeError:
        return ""
    found = job.get("id") if isinstance(job, dict) else None
    return found if isinstance(found, str) else ""
