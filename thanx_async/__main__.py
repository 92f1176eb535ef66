"""``python -m thanx_async`` and the ``thanx-async`` console script.

The command line needs rich (the ``cli`` extra); the library does not, so
rich is only imported here, once the command line actually runs.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]

NEEDS_CLI_EXTRA = (
    "thanx-async: the command line needs the 'cli' extra (rich). "
    "Install it with: pip install 'thanx-async[cli]'\n"
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``thanx-async`` command line; returns the exit status."""
    try:
        import rich  # noqa: F401, PLC0415 - probe for the optional dependency
    except ImportError:
        sys.stderr.write(NEEDS_CLI_EXTRA)
        return 1
    from thanx_async._cli import run  # noqa: PLC0415 - imports rich

    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
