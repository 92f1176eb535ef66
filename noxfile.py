"""Developer tasks, each runnable alone: tests, lint, types, docs, demo and the benchmarks."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "types", "tests"]
nox.options.default_venv_backend = "venv"


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    """Run the whole test suite with branch coverage."""
    session.install("-e", ".[dev]")
    session.run("pytest", *session.posargs)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """Ruff lint and format check."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python="3.11")
def types(session: nox.Session) -> None:
    """mypy --strict on the package and the tests."""
    session.install("-e", ".[dev]")
    session.run("mypy")


@nox.session(python="3.11")
def docs(session: nox.Session) -> None:
    """Build the documentation site strictly (broken links and references fail)."""
    session.install("-e", ".[docs]")
    session.run("mkdocs", "build", "--strict", "-d", "site", env={"NO_MKDOCS_2_WARNING": "1"})


@nox.session(python="3.11")
def demo(session: nox.Session) -> None:
    """The README's first command: 100,000 rewards through the emulator."""
    session.install("-e", ".[cli]")
    session.run("thanx-async", "demo")


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """The benchmark suite (about 15 minutes); rewrites the tables in docs/performance.md."""
    session.install("-e", ".[bench]")
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session(name="bench-smoke", python="3.11")
def bench_smoke(session: nox.Session) -> None:
    """The CI smoke benchmark (under a minute): ratio checks with generous slack."""
    session.install("-e", ".")
    session.run("python", "-m", "benchmarks.smoke", *session.posargs)


@nox.session(name="bench-fleet", python="3.11")
def bench_fleet(session: nox.Session) -> None:
    """W5 (about 8 minutes): four processes share one credential through Redis (redis-server)."""
    session.install("-e", ".[bench,redis]")
    session.run("python", "-m", "benchmarks.fleet", *session.posargs)
