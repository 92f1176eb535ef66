"""The --webhook-* options of `python -m thanx_async.testing` and `thanx-async emulator`."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

import thanx_async.testing
from thanx_async._cli import run
from thanx_async.testing import DEFAULT_WEBHOOK_SECRET, EmulatorState
from thanx_async.testing._server import _parser
from thanx_async.testing._webhook_options import webhook_options


def options(*argv: str) -> dict[str, Any]:
    return webhook_options(_parser().parse_args(list(argv)))


def test_defaults_send_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --webhook-url nothing is configured to be sent; the secret has a default."""
    monkeypatch.delenv("THANX_WEBHOOK_SECRET", raising=False)
    assert options() == {
        "webhook_url": None,
        "webhook_secret": DEFAULT_WEBHOOK_SECRET,
        "webhook_events": ("reward.issued", "reward_batch.completed"),
        "webhook_faults": [],
    }


def test_every_option(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each flag maps onto EmulatorState arguments, which build a working state."""
    monkeypatch.setenv("THANX_WEBHOOK_SECRET", "from-env")
    parsed = options(
        "--webhook-url", "http://127.0.0.1:8000/hook",
        "--webhook-events", "reward_batch.completed",
        "--webhook-drop", "0.1",
        "--webhook-duplicate", "0.2",
        "--webhook-bad-signature", "0.3",
        "--webhook-delay", "1.5",
    )  # fmt: skip
    assert parsed["webhook_url"] == "http://127.0.0.1:8000/hook"
    assert parsed["webhook_secret"] == "from-env"
    assert parsed["webhook_events"] == ("reward_batch.completed",)
    assert parsed["webhook_faults"] == [
        {"drop": True, "probability": 0.1, "times": None},
        {"duplicate": True, "delay": 1.5, "probability": 0.2, "times": None},
        {"bad_signature": True, "delay": 1.5, "probability": 0.3, "times": None},
        {"delay": 1.5, "times": None},
    ]
    state = EmulatorState(**parsed)
    assert [f.drop for f in state.webhooks.faults.pending] == [True, False, False, False]
    assert options("--webhook-secret", "from-flag")["webhook_secret"] == "from-flag"


@pytest.mark.parametrize(
    "argv",
    [
        ["--webhook-drop", "1.5"],
        ["--webhook-duplicate", "x"],
        ["--webhook-delay", "-1"],
        ["--webhook-events", "reward.issued,reward.revoked"],
    ],
)
def test_bad_values_are_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Out-of-range or unknown values exit 2 with a message."""
    with pytest.raises(SystemExit) as caught:
        _parser().parse_args(argv)
    assert caught.value.code == 2
    assert "--webhook-" in capsys.readouterr().err


def test_thanx_async_emulator_forwards_the_options(monkeypatch: pytest.MonkeyPatch) -> None:
    """`thanx-async emulator --webhook-...` hands every webhook option to the emulator command."""
    seen: list[list[str]] = []

    def fake_main(argv: list[str]) -> int:
        seen.append(argv)
        return 0

    monkeypatch.setattr(thanx_async.testing, "main", fake_main)
    status = run([
        "emulator", "--port", "0", "--webhook-url", "http://127.0.0.1:8000/hook",
        "--webhook-secret", "s3", "--webhook-events", "reward.issued", "--webhook-drop", "0.25",
        "--webhook-delay", "2",
    ])  # fmt: skip
    assert status == 0
    (argv,) = seen
    forwarded = webhook_options(_parser().parse_args(argv))
    assert forwarded["webhook_url"] == "http://127.0.0.1:8000/hook"
    assert forwarded["webhook_secret"] == "s3"
    assert forwarded["webhook_events"] == ("reward.issued",)
    assert forwarded["webhook_faults"][0] == {"drop": True, "probability": 0.25, "times": None}
    assert forwarded["webhook_faults"][-1] == {"delay": 2.0, "times": None}


def test_standalone_banner_mentions_webhooks_but_not_a_real_secret() -> None:
    """The standalone command prints where webhooks go; a configured secret is never printed."""
    command = [
        sys.executable, "-m", "thanx_async.testing", "--port", "0",
        "--webhook-url", "http://127.0.0.1:9/hook", "--webhook-secret", "do-not-print-me",
    ]  # fmt: skip
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            banner: list[str] = []
            while len(banner) < 20 and banner[-1:] != ["Press Ctrl+C to stop.\n"]:
                banner.append(process.stdout.readline())
        finally:
            process.terminate()
            process.wait(timeout=10)
    text = "".join(banner)
    assert "webhooks: reward.issued, reward_batch.completed to http://127.0.0.1:9/hook" in text
    assert "the configured secret" in text
    assert "do-not-print-me" not in text
