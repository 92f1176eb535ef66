"""Signing and verifying deliveries: ``X-Thanx-Signature`` is the hex HMAC-SHA256 of the raw body.

Verification works on the raw bytes exactly as received (never re-serialised
JSON, whose spacing and key order can differ from what Thanx signed) and
compares in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Final

from thanx_async.webhooks._errors import InvalidSignatureError

__all__ = [
    "SIGNATURE_HEADER",
    "check_signature",
    "compute_signature",
    "secrets_of",
    "verify_signature",
]

#: The request header carrying the signature.
SIGNATURE_HEADER: Final = "X-Thanx-Signature"

# 32 bytes of SHA-256, as lowercase hex.
_SIGNATURE_LENGTH: Final = 64


def secrets_of(secret: str | Sequence[str]) -> tuple[bytes, ...]:
    """The secret(s) as UTF-8 keys, refusing an empty one.

    An empty key would let anyone sign (the HMAC of an empty key is public
    knowledge): it is what an unset environment variable usually gives, so
    it is a configuration error, never a usable secret.

    Raises:
        TypeError: ``secret`` is neither a string nor a sequence of strings.
        ValueError: no secret, or an empty one.
    """
    secrets = (secret,) if isinstance(secret, str) else tuple(secret)
    if not secrets:
        raise ValueError("no webhook secret given")
    for item in secrets:
        if not isinstance(item, str):
            raise TypeError(f"a webhook secret must be a str, not {type(item).__name__}")
        if not item:
            raise ValueError("the webhook secret is empty (is its environment variable set?)")
    return tuple(item.encode() for item in secrets)


def _raw(raw_body: bytes) -> bytes:
    if isinstance(raw_body, bytes | bytearray | memoryview):
        return bytes(raw_body)
    raise TypeError(
        f"raw_body must be the request body as bytes, not {type(raw_body).__name__} "
        "(verify the bytes received, never re-serialised JSON)"
    )


def compute_signature(raw_body: bytes, secret: str) -> str:
    """The ``X-Thanx-Signature`` Thanx sends with ``raw_body``: lowercase hex HMAC-SHA256.

    Useful to sign deliveries in tests (the emulator signs with it).

    Args:
        raw_body: the exact bytes of the request body.
        secret: the webhook secret Thanx gave you (used as UTF-8).

    Example:
        >>> compute_signature(b'{"event":"ping"}', "s3cret")[:16]
        'dfdb9d36759a59dc'
    """
    (key,) = secrets_of(secret)
    return hmac.new(key, _raw(raw_body), hashlib.sha256).hexdigest()


def check_signature(raw_body: bytes, signature: object, keys: tuple[bytes, ...]) -> None:
    """:func:`verify_signature` on bytes and keys already checked (the receiver's hot path)."""
    if not isinstance(signature, str) or not signature:
        raise InvalidSignatureError(f"missing {SIGNATURE_HEADER} header")
    if len(signature) != _SIGNATURE_LENGTH:
        raise InvalidSignatureError(f"{SIGNATURE_HEADER} is not a hex HMAC-SHA256 (wrong length)")
    # Compared as bytes so a header with non-ASCII characters is simply unequal
    # (compare_digest refuses non-ASCII str). Every secret is tried, with no
    # early exit, so the time taken does not say which one matched.
    given = signature.encode("utf-8", "surrogateescape")
    matched = False
    for key in keys:
        expected = hmac.new(key, raw_body, hashlib.sha256).hexdigest().encode()
        matched |= hmac.compare_digest(expected, given)
    if not matched:
        raise InvalidSignatureError(f"{SIGNATURE_HEADER} does not match the body")


def verify_signature(raw_body: bytes, signature: str | None, secret: str | Sequence[str]) -> None:
    """Check that ``signature`` is the lowercase hex HMAC-SHA256 of ``raw_body`` under ``secret``.

    The comparison is constant-time (:func:`hmac.compare_digest`). Only the
    documented form is accepted: exactly 64 **lowercase** hex digits, no
    prefix, no whitespace; an uppercase signature is refused (Thanx sends
    lowercase, and being strict costs nothing).

    Args:
        raw_body: the request body exactly as received, as bytes.
        signature: the ``X-Thanx-Signature`` header value (``None`` if absent).
        secret: the webhook secret, or several (any one matching is enough:
            rotate by deploying old and new together, then dropping the old).

    Raises:
        InvalidSignatureError: the header is missing, empty, malformed or wrong.
        TypeError: ``raw_body`` is not bytes (e.g. a decoded ``str``).
        ValueError: no secret, or an empty one.

    Example:
        >>> body = b'{"event":"ping"}'
        >>> verify_signature(body, compute_signature(body, "s3cret"), "s3cret")
    """
    check_signature(_raw(raw_body), signature, secrets_of(secret))
