"""X-Thanx-Signature: lowercase hex HMAC-SHA256 of the raw body, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.webhooks.conftest import OTHER_SECRET, SECRET
from thanx_async import ThanxError
from thanx_async.webhooks import InvalidSignatureError, compute_signature, verify_signature

# The Thanx webhook docs' verification example: this payload, serialised
# compactly (Ruby's to_json), signed with this secret, gives this signature
# (THANX_API.md's test vector). The bytes are the docs' example exactly.
THANX_DOCS_SECRET = "f19ce124-48e4-45fb-b39b-4f9e3e1d4b1b"
THANX_DOCS_PAYLOAD = (
    b'{"purchase":{"id":"bd4163e4ea5e168431fdc4b8d1ea061f","amount":"7.76",'
    b'"purchased_at":"2024-03-26T21:38:36.000Z","event":"create",'
    b'"user":{"id":"675c038cfc5f43591718936c18080855","email":"example@thanx.com",'
    b'"first_name":"Thanx","last_name":"Example"},'
    b'"merchant":{"id":"a91f75a0dc2cc54a62ad8a1a05b9fa6b","name":"Thanx Restaurant"},'
    b'"location":{},"order":{},"products":["Latte"]}}'
)
THANX_DOCS_SIGNATURE = "425bf0e847d0647d6e3449c7c1cddadc2095a98c954a7549da0d01c417b833fd"

BODY = b'{"event":"reward_batch.completed","data":{}}'


def test_thanx_documented_vector() -> None:
    """The documented secret over the documented payload gives the documented signature."""
    assert compute_signature(THANX_DOCS_PAYLOAD, THANX_DOCS_SECRET) == THANX_DOCS_SIGNATURE
    verify_signature(THANX_DOCS_PAYLOAD, THANX_DOCS_SIGNATURE, THANX_DOCS_SECRET)


def test_independent_vector() -> None:
    """A vector computed outside the SDK (openssl dgst -sha256 -hmac) verifies."""
    # printf '%s' '{"event":"reward_batch.completed","data":{}}' \
    #   | openssl dgst -sha256 -hmac 'whsec-test-0f1e2d3c'
    expected = "0cae2e9135b6473e88d858d6110efb5ee4cd08f8a4838f475005dd286ef793de"
    assert compute_signature(BODY, SECRET) == expected
    verify_signature(BODY, expected, SECRET)


def test_reserialised_json_does_not_verify() -> None:
    """The same JSON with other spacing is other bytes: verification is on the raw body."""
    spaced = b'{"event": "reward_batch.completed", "data": {}}'
    with pytest.raises(InvalidSignatureError):
        verify_signature(spaced, compute_signature(BODY, SECRET), SECRET)


@pytest.mark.parametrize(
    ("signature", "why"),
    [
        (None, "missing"),
        ("", "missing"),
        ("abc123", "wrong length"),
        ("z" * 64, "does not match"),
        ("0" * 64, "does not match"),
        (" " + "0" * 63, "does not match"),
        ("é" * 64, "does not match"),
    ],
)
def test_missing_or_malformed_signature_is_refused(signature: str | None, why: str) -> None:
    """Missing, empty, short, non-hex or non-ASCII headers raise InvalidSignatureError."""
    with pytest.raises(InvalidSignatureError, match=why):
        verify_signature(BODY, signature, SECRET)


def test_uppercase_hex_is_refused() -> None:
    """Only the documented lowercase form is accepted (a decision, documented in the docstring)."""
    with pytest.raises(InvalidSignatureError):
        verify_signature(BODY, compute_signature(BODY, SECRET).upper(), SECRET)


def test_prefixed_signature_is_refused() -> None:
    """A GitHub-style ``sha256=`` prefix is not the documented form."""
    with pytest.raises(InvalidSignatureError):
        verify_signature(BODY, "sha256=" + compute_signature(BODY, SECRET), SECRET)


def test_wrong_secret_and_tampered_body_are_refused() -> None:
    """Another secret's signature, or a body changed by one byte, does not verify."""
    with pytest.raises(InvalidSignatureError):
        verify_signature(BODY, compute_signature(BODY, OTHER_SECRET), SECRET)
    with pytest.raises(InvalidSignatureError):
        verify_signature(BODY + b" ", compute_signature(BODY, SECRET), SECRET)


def test_any_of_several_secrets_verifies() -> None:
    """During a rotation both the old and the new secret are accepted."""
    for secret in (SECRET, OTHER_SECRET):
        verify_signature(BODY, compute_signature(BODY, secret), [OTHER_SECRET, SECRET])
    with pytest.raises(InvalidSignatureError):
        verify_signature(BODY, compute_signature(BODY, "third"), [OTHER_SECRET, SECRET])


def test_secret_is_utf8() -> None:
    """A non-ASCII secret keys the HMAC with its UTF-8 bytes."""
    secret = "clé-secrète"
    expected = hmac.new(secret.encode("utf-8"), BODY, hashlib.sha256).hexdigest()
    assert compute_signature(BODY, secret) == expected


@pytest.mark.parametrize("secret", ["", [], ["ok", ""]])
def test_empty_secret_is_a_configuration_error(secret: str | list[str]) -> None:
    """An empty secret (an unset environment variable) is refused: anyone could sign with it."""
    with pytest.raises(ValueError, match="secret"):
        verify_signature(BODY, compute_signature(BODY, "x"), secret)


def test_body_must_be_bytes() -> None:
    """A decoded str body is refused with TypeError (verify the bytes received)."""
    with pytest.raises(TypeError, match="bytes"):
        verify_signature(BODY.decode(), compute_signature(BODY, SECRET), SECRET)  # type: ignore[arg-type]
    verify_signature(bytearray(BODY), compute_signature(BODY, SECRET), SECRET)  # type: ignore[arg-type]


def test_errors_are_thanx_errors_without_secrets() -> None:
    """InvalidSignatureError is a ThanxError and never shows the secret or the signature."""
    good = compute_signature(BODY, SECRET)
    with pytest.raises(InvalidSignatureError) as caught:
        verify_signature(BODY, good[::-1], SECRET)
    assert isinstance(caught.value, ThanxError)
    assert SECRET not in str(caught.value)
    assert good not in str(caught.value)
    assert good[::-1] not in str(caught.value)


def test_comparison_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The signature is compared with hmac.compare_digest, not ==."""
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    verify_signature(BODY, compute_signature(BODY, SECRET), SECRET)
    assert len(calls) == 1


@given(body=st.binary(max_size=512), secret=st.text(min_size=1, max_size=40))
def test_round_trip_and_one_bit_flips(body: bytes, secret: str) -> None:
    """Any body verifies with its own signature; flipping any hex digit breaks it."""
    signature = compute_signature(body, secret)
    assert len(signature) == 64
    assert signature == signature.lower()
    verify_signature(body, signature, secret)
    for position in (0, 31, 63):
        flipped = "0" if signature[position] != "0" else "1"
        with pytest.raises(InvalidSignatureError):
            verify_signature(
                body, signature[:position] + flipped + signature[position + 1 :], secret
            )
