"""``python -m benchmarks``: run the suite and write the tables into ``docs/performance.md``.

Options: ``--only W1,W4`` runs some experiments (printed, not written to the
docs); ``--quick`` shrinks counts and repetitions for a dry run; ``--reps N``
caps repetitions. Raw results go to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks._env import ROOT, environment
from benchmarks._report import BEGIN, END, render
from benchmarks._suite import experiments, run_experiment

DOC = ROOT / "docs" / "performance.md"
RESULTS = ROOT / "benchmarks" / "results"


def proofs() -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks._proofs"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    result: dict[str, Any] = json.loads(lines[-1]) if lines else {}
    return result


def write_doc(block: str, doc: Path = DOC) -> None:
    """Replace the generated block of the document (or create the document around it)."""
    text = doc.read_text() if doc.exists() else "# Performance\n\n" + BEGIN + "\n" + END + "\n"
    head, sep, rest = text.partition(BEGIN)
    if not sep:
        doc.write_text(text.rstrip() + "\n\n" + block)
        return
    _, sep, tail = rest.partition(END)
    doc.write_text(head + block.rstrip("\n") + (tail if sep else "\n"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--only", help="comma-separated experiment keys (e.g. W1,W4)")
    parser.add_argument("--quick", action="store_true", help="smaller counts, one repetition")
    parser.add_argument("--reps", type=int, help="cap repetitions per experiment")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="with --only: replace those experiments in results/latest.json and rewrite the docs",
    )
    args = parser.parse_args(argv)
    if args.merge and not args.only:
        parser.error("--merge needs --only")
    full = not (args.only or args.quick or args.reps)
    plan = experiments(scale=0.25 if args.quick else 1.0, reps=1 if args.quick else args.reps)
    wanted = set(args.only.split(",")) if args.only else None
    started = time.perf_counter()
    env = environment()
    print(f"benchmarks on {env['nproc']} x {env['cpu']}, Python {env['python']}", flush=True)
    evidence = proofs()
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for exp in plan:
        if wanted is not None and exp.key not in wanted:
            continue
        if not exp.enabled:
            print(f"{exp.key}: skipped ({exp.disabled_reason})", flush=True)
            continue
        print(f"{exp.key}: {exp.title}", flush=True)
        runs[exp.key] = run_experiment(exp, log=lambda line: print(line, flush=True))
    runtime = time.perf_counter() - started
    command = "nox -s bench" if full else "python -m benchmarks " + " ".join(argv or sys.argv[1:])
    merged: dict[str, Any] = {}
    if args.merge:
        merged = json.loads((RESULTS / "latest.json").read_text())
        redone = ", ".join(sorted(runs))
        merged["runs"] |= runs
        merged["merged"] = [*merged.get("merged", []), f"{redone} re-run {env['date']}"]
        runs, env, evidence = merged["runs"], merged["env"], merged["proofs"]
        runtime, command = merged["runtime_s"], "nox -s bench"
        full = True
    block = render(
        plan=plan, runs=runs, env=env, proofs=evidence, runtime_s=runtime, command=command
    )
    if merged.get("merged"):
        note = f"({'; '.join(merged['merged'])} with `python -m benchmarks --only ... --merge`.)"
        block = block.replace("\n\n### Targets", f" {note}\n\n### Targets", 1)
    RESULTS.mkdir(exist_ok=True)
    name = "latest.json" if full else "partial.json"
    payload = merged or {"env": env, "proofs": evidence, "runtime_s": runtime, "runs": runs}
    (RESULTS / name).write_text(json.dumps(payload, indent=1, default=str) + "\n")
    print(block)
    if full:
        write_doc(block)
        print(f"wrote {DOC.relative_to(ROOT)} and benchmarks/results/{name}")
    print(f"total runtime {runtime / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
