"""thanx_async.webhooks: exactly the names in __all__, cheap to import, errors below ThanxError."""

from __future__ import annotations

import subprocess
import sys

import pytest

import thanx_async as ta
from thanx_async import webhooks


def test_all_is_exactly_the_public_names() -> None:
    """__all__ lists exactly the exported names and each resolves."""
    assert len(set(webhooks.__all__)) == len(webhooks.__all__)
    assert set(webhooks.__all__) == set(webhooks._EXPORTS)
    for name in webhooks.__all__:
        assert getattr(webhooks, name) is not None
    public = {n for n in dir(webhooks) if not n.startswith(("_", "@"))}
    assert public == set(webhooks.__all__)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = webhooks.Nope


def test_contract_names_exist() -> None:
    """The names DESIGN.md makes binding are exported."""
    for name in ["verify_signature", "parse_event", "WebhookReceiver", "InvalidSignatureError",
                 "RewardIssued", "RewardBatchCompleted"]:  # fmt: skip
        assert hasattr(webhooks, name), name


def test_errors_are_thanx_errors() -> None:
    """Both webhook errors sit below ThanxError (callers catching ThanxError catch them)."""
    assert issubclass(webhooks.InvalidSignatureError, ta.ThanxError)
    assert issubclass(webhooks.WebhookPayloadError, ta.ThanxError)


def test_import_is_cheap() -> None:
    """Importing the package loads neither aiohttp nor the receiver until a name is used."""
    code = (
        "import sys, thanx_async.webhooks; "
        "print(sorted(m for m in ('aiohttp', 'thanx_async.webhooks._receiver') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
