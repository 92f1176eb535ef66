"""Identifiers: validation, normalisation, and the frozen idempotency-key algorithm."""

from __future__ import annotations

import re
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

import thanx_async as ta
from thanx_async import _identifiers

UUID_SHAPE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")

local_parts = st.text(string.ascii_letters + string.digits + "._+-", min_size=1, max_size=30)
domains = st.lists(
    st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=12), min_size=1, max_size=3
).map(lambda labels: ".".join([*labels, "com"]))
emails = st.builds(lambda local, dom: f"{local}@{dom}", local_parts, domains)
phones = st.builds(
    lambda first, rest: f"+{first}{rest}",
    st.sampled_from("123456789"),
    st.text(string.digits, min_size=1, max_size=14),
)


@given(emails, st.text(" \t\n", max_size=3), st.text(" \t\n", max_size=3))
def test_email_is_trimmed_and_lower_cased(email: str, left: str, right: str) -> None:
    """An email with surrounding whitespace and any case normalises to trimmed lower case."""
    ident = ta.Identifier.parse(left + email.upper() + right)
    assert ident == ta.Identifier("email", email.lower())


@given(emails | phones)
def test_normalisation_is_idempotent(raw: str) -> None:
    """Parsing a normalised value gives it back unchanged."""
    once = ta.Identifier.parse(raw)
    assert ta.Identifier.parse(once.value) == once


@given(phones)
def test_e164_phones_are_accepted_as_they_are(phone: str) -> None:
    """Any E.164 number is a phone identifier with the value untouched."""
    assert ta.Identifier.parse(phone) == ta.Identifier("phone", phone)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "neither an email nor an E.164 phone"),
        ("   ", "neither an email nor an E.164 phone"),
        ("4155551234", "leading '+'"),
        ("(415) 555-1234", "neither"),
        ("+0155551234", "E.164"),
        ("+1", "E.164"),
        ("+1234567890123456", "E.164"),
        ("+1 415 555 1234", "E.164"),
        ("+1@@x.com", "exactly one"),
        ("a@@b.com", "exactly one '@'"),
        ("jane@example", "not a valid email"),
        ("jane doe@example.com", "not a valid email"),
        ("@example.com", "not a valid email"),
    ],
)
def test_invalid_values_say_what_is_wrong_with_which_value(raw: str, reason: str) -> None:
    """An invalid identifier raises InvalidIdentifierError naming the value and the problem."""
    with pytest.raises(ta.InvalidIdentifierError, match=re.escape(reason)) as info:
        ta.Identifier.parse(raw)
    assert info.value.value == raw
    assert repr(raw) in str(info.value)
    assert isinstance(info.value, ValueError)


# Text that looks like an identifier often enough to reach every branch of both paths.
near_identifiers = (
    st.text(
        string.ascii_letters + string.digits + "@.+-_ \t\"()<>[]\\!#$%&'*/=?^`{|}~\x00\x7fÉé",
        max_size=40,
    )
    | emails
    | phones
    | emails.map(str.upper)
)


@given(near_identifiers)
def test_the_fast_path_agrees_with_the_full_validation(raw: str) -> None:
    """normalise() takes shortcuts for already-normalised values: they never change the answer."""
    try:
        expected = _identifiers._normalise_text(raw)
    except ta.InvalidIdentifierError:
        with pytest.raises(ta.InvalidIdentifierError):
            _identifiers.normalise(raw)
    else:
        assert _identifiers.normalise(raw) == expected


def test_non_strings_are_refused() -> None:
    """A non-string identifier is refused with a typed error, not a crash."""
    with pytest.raises(ta.InvalidIdentifierError, match="expected a string"):
        ta.Identifier.parse(4155551234)  # type: ignore[arg-type]


def test_typed_constructors_refuse_the_other_type() -> None:
    """Identifier.email refuses a phone and Identifier.phone refuses an email."""
    with pytest.raises(ta.InvalidIdentifierError):
        ta.Identifier.email("+14155551234")
    with pytest.raises(ta.InvalidIdentifierError):
        ta.Identifier.phone("jane@example.com")


# Pinned forever: these keys must come out the same in every future release.
KEY_VECTORS = [
    (
        {
            "merchant_id": "m",
            "campaign_id": "c",
            "variant_id": "v",
            "identifiers": ["a@example.com"],
        },
        "fc88a577-7205-803c-a89d-7202bd948ae7",
    ),
    (
        {
            "merchant_id": "k2lye10h32l5wzo",
            "campaign_id": "camp_abc123",
            "variant_id": "var_treat1",
            "identifiers": ["jane.smith@example.com", "+14155551234"],
        },
        "7ec35390-ea4b-8780-9731-bbd3b498c2a2",
    ),
    (
        {
            "merchant_id": "k2lye10h32l5wzo",
            "campaign_id": "camp_abc123",
            "variant_id": "var_treat1",
            "identifiers": ["jane.smith@example.com", "+14155551234"],
            "dedupe_keys": ["evt-1", None],
            "namespace": "shop-7",
        },
        "f5be4c9a-cf0d-8404-88c4-c74789530148",
    ),
]


@pytest.mark.parametrize(("inputs", "expected"), KEY_VECTORS)
def test_idempotency_key_vectors_are_pinned(inputs: dict[str, object], expected: str) -> None:
    """The key algorithm gives the pinned value for each test vector."""
    assert ta.idempotency_key(**inputs) == expected  # type: ignore[arg-type]


def test_idempotency_key_follows_the_documented_algorithm() -> None:
    """The key is SHA-256 of the documented netstring form, cut to a version-8 UUID."""
    import hashlib
    import uuid

    text = (
        "thanx_async/idempotency/v1\n"
        "6:shop-7,1:m,1:c,1:v,1:2,"
        "5:email,13:a@example.com,+5:evt-1,"
        "5:phone,12:+14155551234,-"
    )
    raw = bytearray(hashlib.sha256(text.encode()).digest()[:16])
    raw[6] = (raw[6] & 0x0F) | 0x80
    raw[8] = (raw[8] & 0x3F) | 0x80
    expected = str(uuid.UUID(bytes=bytes(raw)))
    key = ta.idempotency_key(
        merchant_id="m",
        campaign_id="c",
        variant_id="v",
        identifiers=["A@Example.com ", "+14155551234"],
        dedupe_keys=["evt-1", None],
        namespace="shop-7",
    )
    assert key == expected


batches = st.fixed_dictionaries(
    {
        "merchant_id": st.text(max_size=5),
        "campaign_id": st.text(max_size=5),
        "variant_id": st.text(max_size=5),
        "identifiers": st.lists(emails | phones, min_size=1, max_size=5, unique=True),
        "namespace": st.text(max_size=5),
    }
)


@given(batches, batches)
def test_different_content_gives_a_different_key(
    a: dict[str, object], b: dict[str, object]
) -> None:
    """Two batches get the same key exactly when their normalised content is the same."""
    norm_a = {**a, "identifiers": [ta.Identifier.parse(i) for i in a["identifiers"]]}  # type: ignore[attr-defined]
    norm_b = {**b, "identifiers": [ta.Identifier.parse(i) for i in b["identifiers"]]}  # type: ignore[attr-defined]
    same = norm_a == norm_b
    assert (ta.idempotency_key(**a) == ta.idempotency_key(**b)) == same  # type: ignore[arg-type]


@given(batches, st.lists(st.none() | st.text(max_size=4), min_size=5, max_size=5))
def test_key_is_uuid_shaped_and_depends_on_dedupe_keys(
    batch: dict[str, object], keys: list[str | None]
) -> None:
    """Keys look like lowercase UUIDs and change when a dedupe key is added."""
    n = len(batch["identifiers"])  # type: ignore[arg-type]
    plain = ta.idempotency_key(**batch)  # type: ignore[arg-type]
    assert UUID_SHAPE.fullmatch(plain)
    with_keys = ta.idempotency_key(**batch, dedupe_keys=keys[:n])  # type: ignore[arg-type]
    assert (with_keys == plain) == all(k is None for k in keys[:n])


def test_dedupe_keys_must_match_identifiers() -> None:
    """A dedupe_keys list of the wrong length is a ValueError, not a silent mismatch."""
    with pytest.raises(ValueError, match="as long as"):
        ta.idempotency_key(
            merchant_id="m", campaign_id="c", variant_id="v", identifiers=["a@b.co"], dedupe_keys=[]
        )
