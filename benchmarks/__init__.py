"""Benchmarks of thanx_async against what users would write instead.

``python -m benchmarks`` (or ``nox -s bench``) runs the whole suite and writes
``docs/performance.md``; ``python -m benchmarks.smoke`` (``nox -s bench-smoke``)
is the short CI check. Every measured run happens in a fresh client process
against an emulator in a process of its own; see ``docs/performance.md`` for
the method.
"""
