"""Profile one run with pyinstrument: ``python -m benchmarks.profile [sdk|handrolled] [--n N]``.

Used to find what to fix when a target is missed. Runs the W1 burst (fast jobs,
raised short window) in this process against an emulator process and prints
pyinstrument's call tree of the client side (``--html`` writes a page too).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
from pathlib import Path

from pyinstrument import Profiler

from benchmarks._emulator import EmulatorProcess
from benchmarks._run import EMULATOR_DEFAULTS, run_flow


async def _main(args: argparse.Namespace) -> Profiler:
    spec = {
        "workload": "burst",
        "contender": args.contender,
        "n": args.n,
        "page": args.page,
        "emulator": {"per_second": 50},
        "client_rate_limit": {"per_second": 50},
        "journal": args.journal,
        "concurrent": args.concurrent,
    }
    async with EmulatorProcess(**(EMULATOR_DEFAULTS | spec["emulator"])) as emulator:
        profiler = Profiler(interval=0.0005, async_mode="disabled")
        profiler.start()
        result = await run_flow(spec, emulator)
        profiler.stop()
    print(json.dumps({k: v for k, v in result.items() if k != "by_status"}))
    print(profiler.output_text(unicode=False, color=False, show_all=False, timeline=False))
    return profiler


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile")
    parser.add_argument("contender", nargs="?", default="sdk")
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--page", type=int, default=100)
    parser.add_argument("--journal", action="store_true")
    parser.add_argument("--concurrent", action="store_true", help="submit each page concurrently")
    parser.add_argument(
        "--gc-off", action="store_true", help="disable the cyclic GC (to see the code's own cost)"
    )
    parser.add_argument("--html")
    args = parser.parse_args()
    if args.gc_off:
        gc.disable()
    profiler = asyncio.run(_main(args))
    if args.html:
        Path(args.html).write_text(profiler.output_html())


if __name__ == "__main__":
    main()
