"""One process of a fleet sharing a RedisJournal, driven by its parent test.

Run as ``python tests/redis/journal_child.py REDIS_URL NAME LEASE``. It opens
the journal, then reads one JSON command per line on stdin and answers one
JSON line on stdout:

* ``{"ping": true}`` -> ``"ready"``
* ``{"admit": [values]}`` -> their new ids (one admission)
* ``{"admit_each": [values]}`` -> per value ``{"new": id}`` or ``{"existing": id}``
  (one admission each, all asked at once)
* ``{"seal": {"ids": [...], "key": str, "body": str}}`` -> the batch id
* ``{"accepted": {"batch": id, "job": str}}`` -> null

The parent kills it (SIGKILL) whenever its test says so.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from thanx_async._journal_format import Existing
from thanx_async.redis import RedisJournal

PART = ("merchant-1", "campaign-1", "variant-1")


async def answer(journal: RedisJournal, command: dict[str, Any]) -> object:
    if "ping" in command:
        return "ready"
    if "admit" in command:
        return await journal.admit_many([(PART, "email", v, None) for v in command["admit"]])
    if "admit_each" in command:
        answers = await asyncio.gather(
            *(journal.admit_many([(PART, "email", v, None)]) for v in command["admit_each"])
        )
        out: list[dict[str, int]] = []
        for (result,) in answers:
            if isinstance(result, Existing):
                out.append({"existing": result.row_id})
            else:
                assert isinstance(result, int), result
                out.append({"new": result})
        return out
    if "seal" in command:
        seal = command["seal"]
        return await journal.seal(PART, seal["key"], seal["body"].encode(), seal["ids"])
    if "accepted" in command:
        await journal.accepted(command["accepted"]["batch"], command["accepted"]["job"])
        return None
    raise ValueError(f"unknown command {command!r}")


async def main(url: str, name: str, lease: float) -> None:
    journal = RedisJournal(url, name=name, lease=lease)
    await journal.open()
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        result = await answer(journal, json.loads(line))
        print(json.dumps(result), flush=True)  # noqa: T201 - it talks to the parent through stdout
    await journal.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
