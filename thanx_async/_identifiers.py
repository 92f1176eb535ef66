"""Identifiers (who gets a reward) and the deterministic idempotency key.

Normalisation: surrounding whitespace is trimmed; emails are lower-cased;
phones must already be E.164 (``+`` then 2 to 15 digits, the first 1-9). We do
not guess at national formats: "(415) 555-1234" is refused, not rewritten,
because a wrong guess would reward the wrong person.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Sequence
from typing import Literal

import attrs

from thanx_async._errors import InvalidIdentifierError

__all__ = [
    "Identifier",
    "IdentifierType",
    "check_raw",
    "check_text_argument",
    "idempotency_key",
    "normalise",
]

IdentifierType = Literal["email", "phone"]

_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
# Deliberately plain: one @, a local part and a dotted domain, nothing that is
# whitespace or a control character. The server is the final judge of deliverability.
_EMAIL = re.compile(
    r"[^\s@\x00-\x1f\x7f\"(),:;<>\[\\\]]{1,64}"
    r"@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?"
)
_MAX_EMAIL = 254
# Already-normalised emails, the common case: lower-case ASCII, no surrounding
# whitespace. Everything this accepts the full path accepts unchanged (the
# local part's characters are a subset of _EMAIL's, and none is upper-case,
# whitespace or '@'), so it only skips work; the hypothesis tests check that.
_CANONICAL_EMAIL = re.compile(
    r"[a-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}"
    r"@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?"
)


@attrs.frozen(slots=True)
class Identifier:
    """A normalised email or phone identifier.

    Build one with :meth:`email`, :meth:`phone` or :meth:`parse`; they validate
    and normalise, and raise :class:`~thanx_async.InvalidIdentifierError`
    saying what is wrong with which value.

    Example:
        >>> Identifier.parse("  Jane.Smith@Example.com ")
        Identifier(type='email', value='jane.smith@example.com')
        >>> Identifier.parse("+14155551234").type
        'phone'
    """

    type: IdentifierType
    value: str

    @classmethod
    def email(cls, value: str) -> Identifier:
        """Validate and normalise an email address (trimmed, lower-cased)."""
        return cls("email", _email(_text(value), value))

    @classmethod
    def phone(cls, value: str) -> Identifier:
        """Validate a phone number, which must be E.164 (e.g. ``+14155551234``)."""
        return cls("phone", _phone(_text(value), value))

    @classmethod
    def parse(cls, value: str | Identifier) -> Identifier:
        """Infer the type: an ``@`` makes an email, otherwise a leading ``+`` a phone.

        An :class:`Identifier` is returned unchanged.
        """
        if isinstance(value, Identifier):
            return value
        return cls(*normalise(value))

    def to_json(self) -> dict[str, str]:
        """The identifier as the API's ``{"type", "value"}`` object."""
        return {"type": self.type, "value": self.value}

    def __str__(self) -> str:
        return self.value


def normalise(value: object) -> tuple[IdentifierType, str]:
    """Validate and normalise ``value``: its type and normalised value.

    What :meth:`Identifier.parse` does, without building the object (the
    batcher's submit path keeps only these two strings).
    """
    if type(value) is str and len(value) <= _MAX_EMAIL:  # fast paths: already normalised
        if _CANONICAL_EMAIL.fullmatch(value) is not None:
            return "email", value
        if _E164.fullmatch(value) is not None:
            return "phone", value
    return _normalise_text(value)


def _normalise_text(value: object) -> tuple[IdentifierType, str]:
    text = _text(value)
    # "@" first: "+promo@example.com" is an email, not a malformed phone.
    if "@" in text:
        return "email", _email(text, value)
    if text.startswith("+"):
        return "phone", _phone(text, value)
    if text and text.replace(" ", "").replace("-", "").isdigit():
        raise InvalidIdentifierError(value, "phones must be E.164 with a leading '+'")
    raise InvalidIdentifierError(value, "neither an email nor an E.164 phone")


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidIdentifierError(value, f"expected a string, got {type(value).__name__}")
    if not value.isascii() and not _encodable(value):
        # What json.loads makes of "\\ud800": no JSON body or key could carry it.
        raise InvalidIdentifierError(value, "not valid Unicode text (a lone surrogate)")
    return value.strip()


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


#: Longest value or dedupe key taken without validation (hand-built identifiers, event ids).
MAX_RAW_LENGTH = 1_000


def check_raw(type_: object, value: object) -> None:
    """Refuse what no request could carry, for an :class:`Identifier` built by hand.

    A hand-built ``Identifier(type, value)`` skips validation on purpose (the
    server is its judge), but it must still be a string of a known type that
    can be encoded, or it would break the body of every identifier batched
    with it.
    """
    if type_ not in ("email", "phone"):
        raise InvalidIdentifierError(value, f"type must be 'email' or 'phone', got {type_!r}")
    if not isinstance(value, str) or not value:
        raise InvalidIdentifierError(value, "the value must be a non-empty string")
    if len(value) > MAX_RAW_LENGTH:
        raise InvalidIdentifierError(value, f"longer than {MAX_RAW_LENGTH} characters")
    if not value.isascii() and not _encodable(value):
        raise InvalidIdentifierError(value, "not valid Unicode text (a lone surrogate)")


def check_text_argument(name: str, value: object, *, max_length: int = MAX_RAW_LENGTH) -> None:
    """Refuse a ``dedupe_key`` or partition id that is not a string a request can carry.

    Raises:
        TypeError: not a ``str`` (an int or bytes would break the batch's body or key).
        ValueError: longer than ``max_length``, or not encodable (a lone surrogate).
    """
    if type(value) is not str:
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    if len(value) > max_length:
        raise ValueError(f"{name} is longer than {max_length} characters")
    if not value.isascii() and not _encodable(value):
        raise ValueError(f"{name} is not valid Unicode text (a lone surrogate)")


def _email(text: str, raw: object) -> str:
    text = text.lower()
    if not text:
        raise InvalidIdentifierError(raw, "empty email")
    if len(text) > _MAX_EMAIL:
        raise InvalidIdentifierError(raw, f"email longer than {_MAX_EMAIL} characters")
    if text.count("@") != 1:
        raise InvalidIdentifierError(raw, "an email needs exactly one '@'")
    if not _EMAIL.fullmatch(text):
        raise InvalidIdentifierError(raw, "not a valid email address")
    return text


def _phone(text: str, raw: object) -> str:
    if not _E164.fullmatch(text):
        raise InvalidIdentifierError(
            raw, "phones must be E.164: '+', then 2-15 digits, the first 1-9"
        )
    return text


_KEY_PREFIX = "thanx_async/idempotency/v1\n"


def _net(text: str) -> str:
    # A netstring over code points: "<length>:<text>," frames any text unambiguously.
    return f"{len(text)}:{text},"


def canonical_head(
    *, merchant_id: str, campaign_id: str, variant_id: str, namespace: str, count: int
) -> str:
    """The start of the canonical text: version line, partition, namespace and count."""
    parts = (namespace, merchant_id, campaign_id, variant_id, str(count))
    return _KEY_PREFIX + "".join(_net(part) for part in parts)


def canonical_item(type_: str, value: str, dedupe_key: str | None) -> str:
    """One identifier's part of the canonical text."""
    tail = "-" if dedupe_key is None else "+" + _net(dedupe_key)
    return f"{len(type_)}:{type_},{len(value)}:{value},{tail}"


def canonical_batch(
    *,
    merchant_id: str,
    campaign_id: str,
    variant_id: str,
    identifiers: Sequence[Identifier],
    dedupe_keys: Sequence[str | None] | None = None,
    namespace: str = "",
) -> bytes:
    r"""The exact bytes :func:`idempotency_key` hashes (version 1 of the format).

    ``"thanx_async/idempotency/v1\n"``, then netstrings of namespace, merchant,
    campaign and variant, then the identifier count as a netstring of its decimal
    form, then per identifier: netstring(type), netstring(value), and ``-`` when
    it has no dedupe key or ``+`` followed by netstring(dedupe key). Netstring
    lengths count Unicode code points; the whole text is encoded as UTF-8.
    """
    if dedupe_keys is None:
        dedupe_keys = [None] * len(identifiers)
    elif len(dedupe_keys) != len(identifiers):
        raise ValueError("dedupe_keys must be as long as identifiers")
    head = canonical_head(
        merchant_id=merchant_id,
        campaign_id=campaign_id,
        variant_id=variant_id,
        namespace=namespace,
        count=len(identifiers),
    )
    body = "".join(
        canonical_item(i.type, i.value, k) for i, k in zip(identifiers, dedupe_keys, strict=True)
    )
    return (head + body).encode("utf-8")


def idempotency_key(
    *,
    merchant_id: str,
    campaign_id: str,
    variant_id: str,
    identifiers: Sequence[Identifier | str],
    dedupe_keys: Sequence[str | None] | None = None,
    namespace: str = "",
) -> str:
    """The deterministic ``X-Idempotency-Key`` of one batch.

    A pure function of the partition, the ordered identifiers (type and
    normalised value), their dedupe keys and an optional namespace: the same
    content gives the same key in any process, machine or later release; any
    difference gives a different key.

    Algorithm (version 1, frozen): SHA-256 of :func:`canonical_batch`; the first
    16 bytes become an RFC 9562 version-8 UUID (the version and variant bits are
    set, leaving 122 bits of the hash), written as lowercase 8-4-4-4-12 hex.

    Args:
        merchant_id: the merchant.
        campaign_id: the campaign.
        variant_id: the variant.
        identifiers: identifiers in batch order; strings are parsed with
            :meth:`Identifier.parse`.
        dedupe_keys: one optional key per identifier (e.g. an event id), so the
            same person can be rewarded twice on purpose.
        namespace: separates otherwise identical batches of different callers.

    Example:
        >>> idempotency_key(merchant_id="m", campaign_id="c", variant_id="v",
        ...                 identifiers=["a@example.com"])
        'fc88a577-7205-803c-a89d-7202bd948ae7'
    """
    parsed = [Identifier.parse(i) for i in identifiers]
    data = canonical_batch(
        merchant_id=merchant_id,
        campaign_id=campaign_id,
        variant_id=variant_id,
        identifiers=parsed,
        dedupe_keys=dedupe_keys,
        namespace=namespace,
    )
    return key_from_canonical(data)


def key_from_canonical(data: bytes) -> str:
    """Hash canonical batch bytes into the UUID-shaped key (see :func:`idempotency_key`)."""
    return key_from_digest(hashlib.sha256(data).digest())


def key_from_digest(digest: bytes) -> str:
    """The UUID-shaped key from the SHA-256 digest of the canonical bytes."""
    raw = bytearray(digest[:16])
    raw[6] = (raw[6] & 0x0F) | 0x80  # version 8: custom, hash-based
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 9562 variant
    return str(uuid.UUID(bytes=bytes(raw)))
