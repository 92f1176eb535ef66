"""Issue rewards to everyone in a CSV file from a script, resumably.

    python examples/bulk_csv.py guests.csv results.csv --journal guests.db

The CSV needs an ``email`` or ``phone`` column. Run it again after Ctrl-C or a
crash: the journal remembers what was submitted and what finished, so the
rerun completes the work and writes a full results file without rewarding
anyone twice. (``thanx-async issue`` does the same with progress and a
summary, without writing code.)
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import sys
from pathlib import Path

import thanx_async as ta

CHUNK = 1000  # submitted together: one journal commit per chunk


def identifiers(path: Path) -> list[tuple[int, ta.Identifier]]:
    """(line, identifier) for every valid row; invalid rows are reported and skipped."""
    valid: list[tuple[int, ta.Identifier]] = []
    with path.open(newline="", encoding="utf-8-sig") as file:
        for line, row in enumerate(csv.DictReader(file), start=2):
            value = row.get("email") or row.get("phone") or ""
            try:
                valid.append((line, ta.Identifier.parse(value)))
            except ta.InvalidIdentifierError as exc:
                print(f"line {line}: skipped {value!r}: {exc.reason}", file=sys.stderr)
    return valid


async def issue_all(rows: list[tuple[int, ta.Identifier]], journal: Path) -> list[list[str]]:
    async with ta.ThanxClient.from_env() as client:
        batcher = ta.RewardBatcher(
            client,
            merchant_id=os.environ.get("THANX_MERCHANT_ID", "merchant_demo"),
            campaign_id=os.environ.get("THANX_CAMPAIGN_ID", "camp_welcome"),
            variant_id=os.environ.get("THANX_VARIANT_ID", "var_welcome_treat"),
            journal=journal,
        )
        async with batcher:
            futures: list[asyncio.Future[ta.IssuanceOutcome]] = []
            for start in range(0, len(rows), CHUNK):
                chunk = rows[start : start + CHUNK]
                futures += await asyncio.gather(*(batcher.submit(i) for _, i in chunk))
            results = await asyncio.gather(*futures, return_exceptions=True)
    table = []
    for (line, ident), result in zip(rows, results, strict=True):
        if isinstance(result, BaseException):
            table.append([str(line), ident.value, "error", "", str(result)])
        else:
            status, job, error = result.status.value, result.job_id or "", result.error or ""
            table.append([str(line), ident.value, status, job, error])
    return table


def main() -> int:
    parser = argparse.ArgumentParser(description="Issue a reward to everyone in a CSV.")
    parser.add_argument("source", type=Path)
    parser.add_argument("results", type=Path)
    parser.add_argument("--journal", type=Path, default=Path("bulk-journal.db"))
    args = parser.parse_args()
    table = asyncio.run(issue_all(identifiers(args.source), args.journal))
    with args.results.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["line", "identifier", "status", "job_id", "error"])
        writer.writerows(table)
    issued = sum(1 for row in table if row[2] == "issued")
    print(f"{issued} of {len(table)} issued; details in {args.results}")
    return 0 if issued == len(table) else 1


if __name__ == "__main__":
    sys.exit(main())
