"""What users would write instead of RewardBatcher, each as a competent user would.

(a) :mod:`.naive`: one ``issue_rewards`` per identifier (what Thanx warns against).
(b) :mod:`.dataloader`: aiodataloader, ``max_batch_size=10_000``.
(c) :mod:`.handrolled`: an ``asyncio.Queue`` batcher of about fifty lines.
(d) :mod:`.raw`: raw aiohttp POSTs of pre-serialised bodies, the wire floor.

(a) to (c) use :class:`thanx_async.ThanxClient` (its rate limiter, retries and
``wait_for_job``), so they differ from RewardBatcher only in how they batch and
follow jobs. Each resolves one future per identifier with a :class:`Result`.
"""

from __future__ import annotations

from typing import NamedTuple

import thanx_async as ta


class Result(NamedTuple):
    """The outcome a baseline gives one identifier (fields named like IssuanceOutcome's)."""

    identifier: str
    job_id: str
    issued: bool
    error: str | None
    job: ta.IssuanceJob


def results_of(job: ta.IssuanceJob, identifiers: list[str]) -> list[Result]:
    """Per-identifier results of a finished job: failures are listed by index."""
    failures = {f.identifier_index: f.error for f in job.summary.failures} if job.summary else {}
    completed = job.state is ta.JobState.COMPLETED
    return [
        Result(identifier, job.id, completed and index not in failures, failures.get(index), job)
        for index, identifier in enumerate(identifiers)
    ]
