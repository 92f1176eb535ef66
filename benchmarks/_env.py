"""The machine and software a result was measured on."""

from __future__ import annotations

import datetime
import hashlib
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import thanx_async

ROOT = Path(__file__).resolve().parent.parent


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git(*args: str) -> str:
    try:
        out = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()


def sdk_dir() -> Path:
    """Where the measured thanx_async is imported from (normally ROOT/thanx_async)."""
    return Path(thanx_async.__file__).resolve().parent


def sdk_fingerprint() -> str:
    """A hash of the SDK's source files: which code exactly was measured."""
    digest = hashlib.sha256()
    base = sdk_dir()
    for path in sorted(base.rglob("*.py")):
        digest.update(path.relative_to(base).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def environment() -> dict[str, Any]:
    dirty = _git("status", "--porcelain", "--", "thanx_async")
    elsewhere = sdk_dir() != ROOT / "thanx_async"
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "os": f"{platform.system()} {platform.release()}",
        "aiohttp": _version("aiohttp"),
        "orjson": _version("orjson"),
        "aiodataloader": _version("aiodataloader"),
        "thanx_async": thanx_async.__version__,
        "commit": _git("rev-parse", "--short", "HEAD") or "unknown",
        "sdk_dirty": bool(dirty) and not elsewhere,
        "sdk_path": str(sdk_dir()) if elsewhere else "",
        "sdk_fingerprint": sdk_fingerprint(),
    }
