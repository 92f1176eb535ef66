"""Which loop steps block longest: ``python -m benchmarks.slowsteps [sdk|handrolled]``.

Runs the W1 burst (fast jobs, raised short window) in this process against an
emulator process, with CPython's cyclic GC switched off so that only the
code's own steps remain, and times every callback the event loop runs
(``asyncio.Handle._run``; a task's step is one callback). Prints the slowest
steps by kind. With ``--profile`` each step also runs under cProfile (which
inflates Python-heavy steps) and the slowest step of each kind is broken down
by function, so a loop-lag figure can be traced to the code, or the system
call, that caused it. With ``--gc`` the cyclic GC stays on and its
collections are counted and timed per generation instead (``gc.callbacks``).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import json
import pstats
import time
from asyncio import events
from typing import Any

from benchmarks._emulator import EmulatorProcess
from benchmarks._run import EMULATOR_DEFAULTS, run_flow

_original_run = events.Handle._run


class _StepTimer:
    def __init__(self, threshold: float, *, profile: bool) -> None:
        self.threshold = threshold
        self.profile = profile
        self.slow: list[tuple[float, str]] = []
        self.worst: dict[str, tuple[float, cProfile.Profile]] = {}

    def install(self) -> None:
        timer = self

        def _run(handle: events.Handle) -> None:
            profile = cProfile.Profile() if timer.profile else None
            start = time.perf_counter()
            if profile is None:
                _original_run(handle)
            else:
                profile.enable()
                _original_run(handle)
                profile.disable()
            took = time.perf_counter() - start
            if took >= timer.threshold:
                kind = _kind(handle)
                timer.slow.append((took, kind))
                if profile is not None and took > timer.worst.get(kind, (0.0, None))[0]:
                    timer.worst[kind] = (took, profile)

        events.Handle._run = _run  # type: ignore[method-assign,assignment]

    @staticmethod
    def uninstall() -> None:
        events.Handle._run = _original_run  # type: ignore[method-assign]


def _kind(handle: events.Handle) -> str:
    callback: Any = getattr(handle, "_callback", None)
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Task):
        return f"task {owner.get_coro().__qualname__}"  # type: ignore[union-attr]
    return f"callback {getattr(callback, '__qualname__', repr(callback))}"


class _GcTimer:
    """Count and time CPython's collections, per generation."""

    def __init__(self) -> None:
        self.by_generation: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.by_generation[info["generation"]].append(time.perf_counter() - self._started)


async def _main(args: argparse.Namespace, timer: _StepTimer) -> dict[str, Any]:
    spec = {
        "workload": "burst",
        "contender": args.contender,
        "n": args.n,
        "page": 100,
        "emulator": {"per_second": 50},
        "client_rate_limit": {"per_second": 50},
    }
    async with EmulatorProcess(**(EMULATOR_DEFAULTS | spec["emulator"])) as emulator:
        timer.install()
        try:
            return await run_flow(spec, emulator)
        finally:
            timer.uninstall()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.slowsteps")
    parser.add_argument("contender", nargs="?", default="sdk")
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--threshold-ms", type=float, default=2.0)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--profile", action="store_true", help="break slow steps down by function")
    parser.add_argument("--gc", action="store_true", help="keep the GC on; time its collections")
    args = parser.parse_args()
    timer = _StepTimer(args.threshold_ms / 1000, profile=args.profile)
    collections = _GcTimer()
    if args.gc:
        gc.callbacks.append(collections)
    else:
        gc.disable()
    result = asyncio.run(_main(args, timer))
    if args.gc:
        gc.callbacks.remove(collections)
    keys = ("ids_per_s", "lag_max_ms", "lag_p99_ms", "cpu_per_100k_s")
    print(json.dumps({k: round(result[k], 3) for k in keys}))
    if args.gc:
        for generation, timings in collections.by_generation.items():
            total, longest = sum(timings) * 1000, max(timings, default=0.0) * 1000
            count = len(timings)
            print(f"gen{generation}: {count} collections, {total:.0f} ms, longest {longest:.1f} ms")
    print(f"\nsteps >= {args.threshold_ms} ms: {len(timer.slow)} (the harness's own task is main)")
    for took, kind in sorted(timer.slow, reverse=True)[: args.top]:
        print(f"{took * 1000:8.2f} ms  {kind}")
    for kind, (took, profile) in timer.worst.items():
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(8)
        print(f"\nslowest {kind}: {took * 1000:.2f} ms, by own time:")
        print("\n".join(line for line in out.getvalue().splitlines() if line.strip())[:2500])


if __name__ == "__main__":
    main()
