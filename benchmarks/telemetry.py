"""What telemetry costs: ``python -m benchmarks.telemetry [--n N] [--reps R] [--sdk] [--check]``.

W1's burst (200,000 identifiers handed over 100 per loop turn, fast jobs, the
short window raised to 50/s) through RewardBatcher, each run a fresh client
process against an emulator process (the harness of ``benchmarks._run``), in
these modes:

- ``disabled``: ``opentelemetry`` is made unimportable before the SDK loads,
  as for a user without the ``otel`` extra: every hook returns at its first line.
- ``api``: OpenTelemetry's API is installed and no SDK is configured (the
  common case of a library pulling the API in): the hooks run and call the
  API's proxy tracer and instruments, which do nothing.
- ``sdk`` (``--sdk``): the SDK is configured and records every span and
  metric, exporting nothing: what telemetry costs when it is on.
- ``pre-telemetry`` (``--baseline-tree DIR``): the same run in another source
  tree, e.g. an export of the commit before telemetry (``git archive``), whose
  hooks do not exist at all.

The modes alternate within each repetition, their order rotating, so a slow
phase of the machine hits all of them; ratios are medians of the
per-repetition ratios. The target: ``api`` within 5% of ``disabled``, in
identifiers per second and in client CPU per identifier. ``--check`` exits 1
when it is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

TARGET = 0.95
MODES = ("disabled", "api")


def _configure_sdk() -> None:
    """Global providers recording everything and exporting nothing."""
    from opentelemetry import metrics, trace  # noqa: PLC0415 - only in the sdk mode's child
    from opentelemetry.sdk.metrics import MeterProvider  # noqa: PLC0415
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: PLC0415
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415

    trace.set_tracer_provider(TracerProvider())
    metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))


def child(mode: str, spec: dict[str, Any]) -> None:
    """One measured run in this (fresh) process, in ``mode``; prints one JSON line."""
    if mode == "disabled":
        # An import of opentelemetry now fails, as without the otel extra.
        sys.modules["opentelemetry"] = None  # type: ignore[assignment]
    elif mode == "sdk":
        _configure_sdk()
    from benchmarks._run import main_async  # noqa: PLC0415 - after the mode is set up
    from thanx_async._telemetry._api import load  # noqa: PLC0415

    try:
        result = asyncio.run(main_async(spec))
    except Exception as exc:  # noqa: BLE001 - reported, the parent records it
        result = {"error": f"{type(exc).__name__}: {exc}"}
    result["otel_loaded"] = load() is not None
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    os._exit(0)


def run_mode(mode: str, spec: dict[str, Any], baseline: Path | None) -> dict[str, Any]:
    """One run of ``mode`` in a fresh process."""
    if mode == "pre-telemetry":
        assert baseline is not None
        command = [sys.executable, "-m", "benchmarks._run", json.dumps(spec)]
        env = os.environ | {"PYTHONPATH": str(baseline)}
        cwd: Path | None = baseline
    else:
        command = [sys.executable, "-m", "benchmarks.telemetry", "--child", mode, json.dumps(spec)]
        env, cwd = None, None
    started = time.perf_counter()
    proc = subprocess.run(
        command, capture_output=True, text=True, timeout=900, check=False, env=env, cwd=cwd
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        return {"error": f"no result (exit {proc.returncode}): {tail}"}
    result: dict[str, Any] = json.loads(lines[-1])
    result["wall_s"] = time.perf_counter() - started
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.telemetry")
    parser.add_argument("--n", type=int, default=200_000, help="identifiers per run")
    parser.add_argument("--reps", type=int, default=5, help="repetitions of every mode")
    parser.add_argument("--sdk", action="store_true", help="also measure with the SDK recording")
    parser.add_argument("--baseline-tree", type=Path, help="a source tree without telemetry")
    parser.add_argument("--check", action="store_true", help="exit 1 if api < 95%% of disabled")
    parser.add_argument("--json", type=Path, help="write the raw results there")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "SPEC"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child[0], json.loads(args.child[1]))
        return 0  # not reached: the child exits at once

    from benchmarks._suite import (  # noqa: PLC0415 - the child must not import it first
        FAST_JOBS,
        RAISED_LIMITS,
        _spec,
        brief,
        paired_ratio,
        summarise,
    )

    spec = _spec("burst", args.n, FAST_JOBS | RAISED_LIMITS, page=100) | {"contender": "sdk"}
    modes = list(MODES)
    if args.sdk:
        modes.append("sdk")
    if args.baseline_tree:
        modes.append("pre-telemetry")
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    for rep in range(args.reps):
        order = modes[rep % len(modes) :] + modes[: rep % len(modes)]
        for mode in order:
            result = run_mode(mode, spec, args.baseline_tree)
            result["rep"] = rep
            runs[mode].append(result)
            print(f"  rep {rep + 1}/{args.reps} {mode:<14} {brief(result)}", flush=True)
    print()
    print(f"W1 burst, {args.n:,} identifiers, {args.reps} repetitions; medians")
    print(f"{'mode':<14} {'runs':>4} {'ids/s':>10} {'CPU s/100k':>11} {'max lag ms':>11}")
    for mode in modes:
        s = summarise(runs[mode])
        if "error" in s:
            print(f"{mode:<14} ERROR {s['error']}")
            continue
        print(
            f"{mode:<14} {s['reps']:>4} {s['ids_per_s']:>10,.0f} {s['cpu_per_100k_s']:>11.3f}"
            f" {s['lag_max_ms']:>11.1f}"
        )
    print()
    verdicts = []
    for mode in modes[1:]:
        speed, speeds = paired_ratio(runs, mode, "disabled", "ids_per_s")
        cpu, _ = paired_ratio(runs, "disabled", mode, "cpu_per_100k_s")
        print(
            f"{mode} vs disabled: throughput {speed:.3f}x, CPU per identifier {1 / cpu:.3f}x"
            f"  (per repetition: {', '.join(f'{r:.3f}' for r in speeds)})"
        )
        if mode == "api":
            verdicts = [speed, cpu]
    met = bool(verdicts) and min(verdicts) >= TARGET
    print(f"target (api within 5% of disabled, both figures): {'met' if met else 'MISSED'}")
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))
    return 1 if args.check and not met else 0


if __name__ == "__main__":
    sys.exit(main())
