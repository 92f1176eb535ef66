"""What every command shares: credentials, the client, consoles, errors, secrets.

Secrets: the access token is read from ``--access-token`` or
``THANX_ACCESS_TOKEN`` and handed to the client, nothing else. Every line the
command line prints about a failure goes through :meth:`Consoles.error`, and
every log record through :class:`RedactingFilter`, both of which replace the
token with ``***`` should it ever show up (the SDK never puts it in an error;
this is the second belt).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping
from urllib.parse import urlsplit

import attrs
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

from thanx_async._client import ThanxClient
from thanx_async._config import SANDBOX_URL
from thanx_async._errors import (
    APIError,
    AuthenticationError,
    NotFoundError,
    PermissionDeniedError,
    ThanxError,
    TransportError,
)

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "CLIError",
    "Consoles",
    "Credentials",
    "RedactingFilter",
    "check_base_url",
    "configure_logging",
    "describe_error",
    "plural",
    "redact",
    "resolve_credentials",
]

#: Everything went as asked.
EXIT_OK = 0
#: Something failed: an identifier was not issued, or the API refused a request.
EXIT_FAILED = 1
#: The command line was wrong or credentials are missing.
EXIT_USAGE = 2
#: Stopped by Ctrl-C (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130

_MASK = "***"
#: Shorter strings are not worth masking: they would blank out ordinary words.
_MIN_SECRET = 6


class CLIError(Exception):
    """A failure the command reports as one line, with an exit status."""

    def __init__(self, message: str, status: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


_secrets: set[str] = set()


def add_secret(value: str | None) -> None:
    """Remember a value that must never be printed."""
    if value and len(value) >= _MIN_SECRET:
        _secrets.add(value)


def redact(text: str) -> str:
    """``text`` with every known secret replaced by ``***``."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, _MASK)
    return text


def secrets_in_argv(argv: Iterable[str], env: Mapping[str, str]) -> None:
    """Register the token from the environment and from ``--access-token`` before parsing.

    Done before argparse sees the arguments, so even its usage errors (which
    echo unrecognised arguments) cannot show the token.
    """
    add_secret(env.get("THANX_ACCESS_TOKEN"))
    args = list(argv)
    for index, arg in enumerate(args):
        if arg == "--access-token" and index + 1 < len(args):
            add_secret(args[index + 1])
        elif arg.startswith("--access-token="):
            add_secret(arg.partition("=")[2])


class _CloseCounts(logging.Filter):
    """Drops the batcher's closing tally: the command's own summary says it more precisely."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep every record but the batcher's "batcher closed: ..." line."""
        return not (
            record.name == "thanx_async.batcher"
            and isinstance(record.msg, str)
            and record.msg.startswith("batcher closed")
        )


class RedactingFilter(logging.Filter):
    """Masks secrets in log records before any handler formats them."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message if it contains a secret; always keep the record."""
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


@attrs.frozen
class Consoles:
    """The two rich consoles: results on stdout, progress and diagnostics on stderr."""

    out: Console = attrs.field(factory=lambda: Console(highlight=False))
    err: Console = attrs.field(factory=lambda: Console(stderr=True, highlight=False))

    def error(self, message: str) -> None:
        """Print ``error: message`` on stderr (secrets masked, markup escaped)."""
        self.err.print(f"[bold red]error:[/] {escape(redact(message))}", soft_wrap=True)

    def warn(self, message: str) -> None:
        """Print a warning line on stderr (secrets masked, markup escaped)."""
        self.err.print(f"[yellow]warning:[/] {escape(redact(message))}", soft_wrap=True)

    def note(self, message: str) -> None:
        """Print an informational line on stderr (secrets masked, markup escaped)."""
        self.err.print(escape(redact(message)), soft_wrap=True)


def configure_logging(consoles: Consoles, verbosity: int) -> Callable[[], None]:
    """Send the SDK's log records to stderr through rich: warnings, or more with ``-v``.

    Returns:
        A function restoring the logger as it was (the command line may run in-process).
    """
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler = RichHandler(console=consoles.err, show_path=False, show_time=verbosity > 0)
    handler.addFilter(RedactingFilter())
    handler.addFilter(_CloseCounts())
    logger = logging.getLogger("thanx_async")
    saved = (logger.level, logger.propagate)
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False

    def restore() -> None:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]

    return restore


@attrs.frozen
class Credentials:
    """Who the command line talks to the API as (the token is never shown)."""

    client_id: str
    access_token: str = attrs.field(repr=False)
    base_url: str

    def client(self) -> ThanxClient:
        """A client for these credentials."""
        return ThanxClient(
            client_id=self.client_id, access_token=self.access_token, base_url=self.base_url
        )


def resolve_credentials(
    client_id: str | None,
    access_token: str | None,
    base_url: str | None,
    env: Mapping[str, str] | None = None,
) -> Credentials:
    """Flags first, then ``THANX_CLIENT_ID`` / ``THANX_ACCESS_TOKEN`` / ``THANX_BASE_URL``.

    Raises:
        CLIError: the client id or the token is missing, or the base URL is not
            an http(s) URL (exit status 2); the message names what is wrong,
            never the token.
    """
    env = os.environ if env is None else env
    client_id = client_id or env.get("THANX_CLIENT_ID")
    access_token = access_token or env.get("THANX_ACCESS_TOKEN")
    url_source = "--base-url" if base_url else "THANX_BASE_URL"
    base_url = base_url or env.get("THANX_BASE_URL") or SANDBOX_URL
    check_base_url(base_url, url_source)
    missing = [
        f"{variable} (or {flag})"
        for variable, flag, value in (
            ("THANX_CLIENT_ID", "--client-id", client_id),
            ("THANX_ACCESS_TOKEN", "--access-token", access_token),
        )
        if not value
    ]
    if missing or not client_id or not access_token:
        raise CLIError(
            f"missing credentials: set {' and '.join(missing)}. "
            "Thanx issues a client id and an access token per partner.",
            EXIT_USAGE,
        )
    add_secret(access_token)
    return Credentials(client_id=client_id, access_token=access_token, base_url=base_url)


def plural(count: int, word: str) -> str:
    """``1 identifier``, ``2 identifiers``, ``1,000 rows``."""
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def check_base_url(base_url: str, source: str = "THANX_BASE_URL") -> None:
    """Refuse a base URL that is not ``http(s)://host[:port]`` (exit status 2).

    Without a scheme, ``api.thanx.com`` would only fail once a request is
    tried (after the retries), with an error that does not say why.
    """
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CLIError(
            f"{source} {base_url!r} is not an http(s) URL: write it with its scheme, "
            f"e.g. {SANDBOX_URL} or http://127.0.0.1:8400",
            EXIT_USAGE,
        )


def describe_error(exc: BaseException, base_url: str | None = None) -> str:
    """One line saying what went wrong, with a hint where one helps (never a secret)."""
    if isinstance(exc, AuthenticationError):
        message = (
            f"authentication failed ({exc.status} {exc.code or '-'}): the API refused the "
            "client id / access token; check THANX_CLIENT_ID and THANX_ACCESS_TOKEN"
        )
    elif isinstance(exc, PermissionDeniedError):
        message = f"permission denied ({exc.status}): {exc.message}"
    elif isinstance(exc, NotFoundError):
        message = f"not found ({exc.status}): {exc.message}"
    elif isinstance(exc, APIError):
        message = f"the API refused the request: {exc}"
    elif isinstance(exc, TransportError):
        message = f"cannot reach the API{f' at {base_url}' if base_url else ''}: {exc}"
    elif isinstance(exc, ThanxError):
        message = str(exc)
    else:
        message = f"{type(exc).__name__}: {exc}"
    return redact(message)
