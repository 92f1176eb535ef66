"""A scripted server for hostile-answer tests: the innermost transport, answering as told.

It accepts every issue POST with a pending job and answers every poll with
whatever the test's ``job_answer`` returns for the batch that was sent, so a
test can hand the SDK counts that do not add up, another job's id, or garbage.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

import thanx_async as ta
from thanx_async._transport._http import Response

#: What a test returns for a poll: a job object, or raw bytes to send as the body.
JobAnswer = Callable[[str, list[dict[str, str]]], dict[str, Any] | bytes]


def completed(job_id: str, sent: list[dict[str, str]], **fields: Any) -> dict[str, Any]:
    """A well-formed completed job for ``sent``, with ``fields`` overriding parts of it."""
    n = len(sent)
    job: dict[str, Any] = {
        "id": job_id,
        "state": "completed",
        "total_count": n,
        "processed_count": n,
        "success_count": n,
        "failure_count": 0,
        "progress_percent": 100,
        "summary": {"success_count": n, "failure_count": 0, "failures": []},
    }
    job.update(fields)
    return job


class ScriptedTransport:
    """Accepts issue POSTs (202, pending) and answers polls with ``job_answer``."""

    def __init__(self, job_answer: JobAnswer) -> None:
        self.job_answer = job_answer
        self.batches: dict[str, list[dict[str, str]]] = {}
        self.polls = 0
        self.posts = 0

    async def send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None,
        timeout: float,
    ) -> Response:
        """Answer one request as the script says."""
        if method == "POST" and url.endswith("/partner/campaigns/issue"):
            self.posts += 1
            assert body is not None
            sent = orjson.loads(body)["identifiers"]
            job_id = f"job_{len(self.batches) + 1}"
            self.batches[job_id] = sent
            job = {"id": job_id, "state": "pending", "total_count": len(sent)}
            return Response(202, {}, orjson.dumps({"issuance_job": job}))
        if method == "GET" and "/partner/issuance_jobs/" in url:
            self.polls += 1
            job_id = url.split("/partner/issuance_jobs/")[1].split("?", maxsplit=1)[0]
            answer = self.job_answer(job_id, self.batches[job_id])
            data = answer if isinstance(answer, bytes) else orjson.dumps({"issuance_job": answer})
            return Response(200, {}, data)
        return Response(404, {}, b'{"error": {"code": "RESOURCE_NOT_FOUND", "message": "no"}}')

    async def aclose(self) -> None:
        """Nothing to release."""


def scripted_client(transport: ScriptedTransport) -> ta.ThanxClient:
    """A client over ``transport`` with a budget that never binds and instant retries."""
    return ta.ThanxClient(
        client_id="client-hostile",
        access_token="token-hostile",
        base_url="http://hostile.test",
        transport=transport,
        rate_limit=ta.RateLimit(per_second=10_000, per_window=1_000_000),
        retry=ta.RetryPolicy(max_attempts=2, initial_backoff=0.0, max_backoff=0.0, deadline=None),
    )
