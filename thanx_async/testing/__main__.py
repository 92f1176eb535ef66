"""``python -m thanx_async.testing``: run the Thanx API emulator in the foreground."""

from thanx_async.testing._server import main

if __name__ == "__main__":
    raise SystemExit(main())
