"""Every runnable example in examples/, run as a real process against the emulator.

The web examples are served by real servers (aiohttp's, uvicorn) and called
over real HTTP; the consumer runs against a real redis-server. Without
redis-server on PATH the Redis tests skip, unless ``THANX_REQUIRE_REDIS=1``
(set by CI), which turns its absence into a failure.
"""

from __future__ import annotations

import asyncio
import csv
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
import redis

from tests.cli.support import (
    FAST,
    ROOT,
    SECRET_TOKEN,
    EmulatorThread,
    accepted_issues,
    cli_env,
    emulator_thread,
    wait_until,
)
from tests.redis_support import RedisServer, free_port

EXAMPLES = ROOT / "examples"


@pytest.fixture
def emulator() -> Iterator[EmulatorThread]:
    """An emulator with instant jobs, serving from a background thread."""
    with emulator_thread(**FAST) as running:
        yield running


def wait_for_port(port: int, process: subprocess.Popen[str], timeout: float = 30.0) -> None:
    """Wait until something accepts connections on ``port`` (fail if the process died)."""

    def listening() -> bool:
        if process.poll() is not None:
            out, err = process.communicate()
            raise AssertionError(f"the server exited with {process.returncode}:\n{out}\n{err}")
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    wait_until(listening, timeout, f"port {port}")


def start(args: list[str], env: dict[str, str], cwd: Path = ROOT) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def stop(process: subprocess.Popen[str]) -> tuple[str, str]:
    """SIGINT (a graceful shutdown), then the process's output."""
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    return out, err


def test_quickstart_matches_the_readme_and_runs(emulator: EmulatorThread) -> None:
    """The README's library example is examples/quickstart.py, and it runs."""
    code = (EXAMPLES / "quickstart.py").read_text()
    assert f"```python\n{code}```" in (ROOT / "README.md").read_text()
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart.py")],
        env=emulator.env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = [line.split() for line in result.stdout.splitlines()]
    assert [(words[0], words[1]) for words in lines] == [
        ("jane@example.com", "issued"),
        ("+14155551234", "issued"),
        ("unknown.sam@example.com", "failed"),
    ]
    assert len({words[2] for words in lines}) == 1  # one batch, one job


BAD_BODIES: list[tuple[bytes, str]] = [
    (b"identifier=jane@example.com", "the body must be JSON"),
    (b'{"event_id": "e1"}', 'the body needs an "identifier" (an email or an E.164 phone)'),
    (b'["jane@example.com"]', 'the body needs an "identifier" (an email or an E.164 phone)'),
    (b'{"identifier": 14155551234}', '"identifier" and "event_id" must be strings'),
    (
        b'{"identifier": "a@example.com", "event_id": 7}',
        '"identifier" and "event_id" must be strings',
    ),
]


def test_aiohttp_app(emulator: EmulatorThread) -> None:
    """Concurrent HTTP requests to the aiohttp app share a batch; shutdown flushes the rest."""
    port = free_port()
    process = start([str(EXAMPLES / "aiohttp_app.py")], emulator.env(PORT=str(port)))
    try:
        wait_for_port(port, process)
        base = f"http://127.0.0.1:{port}"

        async def clients() -> list[tuple[int, dict[str, object]]]:
            async with aiohttp.ClientSession() as session:

                async def post(path: str, identifier: str) -> tuple[int, dict[str, object]]:
                    async with session.post(base + path, json={"identifier": identifier}) as r:
                        return r.status, await r.json()

                people = [f"guest{n}@example.com" for n in range(40)] + ["not-an-email"]
                answers = await asyncio.gather(*(post("/rewards", p) for p in people))
                later = await post("/rewards/async", "late@example.com")
                return [*answers, later]

        async def bad_requests() -> list[tuple[int, object]]:
            async with aiohttp.ClientSession() as session:
                answers = []
                for path in ("/rewards", "/rewards/async"):
                    for body, _ in BAD_BODIES:
                        async with session.post(base + path, data=body) as r:
                            answers.append((r.status, await r.json()))
                return answers

        answers = asyncio.run(clients())
        refused = asyncio.run(bad_requests())
    finally:
        _, err = stop(process)
    assert process.returncode == 0, err
    assert refused == [(400, {"error": message}) for _, message in BAD_BODIES] * 2
    assert "Traceback" not in err
    assert [status for status, _ in answers[:40]] == [200] * 40
    assert {body["status"] for _, body in answers[:40]} == {"issued"}
    assert answers[40] == (422, {"error": "neither an email nor an E.164 phone"})
    assert answers[41][0] == 202
    issues = [r for r in emulator.emulator.state.requests_for("issue") if r.status == 202]
    assert len(issues) <= 3  # 40 concurrent requests went out in one or two batches
    assert emulator.issued()[("email", "late@example.com")] == 1  # flushed at shutdown


def test_fastapi_app_under_uvicorn(emulator: EmulatorThread) -> None:
    """The FastAPI app served by uvicorn: lifespan opens and closes the batcher."""
    port = free_port()
    args = ["-m", "uvicorn", "fastapi_app:app", "--app-dir", str(EXAMPLES)]
    process = start([*args, "--host", "127.0.0.1", "--port", str(port)], emulator.env())
    try:
        wait_for_port(port, process)

        async def clients() -> tuple[list[httpx.Response], httpx.Response]:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
                people = [f"+1415555{n:04d}" for n in range(1, 31)] + ["unknown.z@example.com"]
                posts = [c.post("/rewards", json={"identifier": p}) for p in people]
                posts.append(c.post("/rewards", json={"identifier": "555-1234"}))
                posts.append(c.post("/rewards", json={"event_id": "e1"}))
                posts.append(c.post("/rewards", content=b"not json"))
                answers = await asyncio.gather(*posts)
                return answers, await c.get("/stats")

        answers, stats = asyncio.run(clients())
    finally:
        _, err = stop(process)
    assert process.returncode == 0, err
    assert "Application shutdown complete" in err
    assert [a.json()["status"] for a in answers[:30]] == ["issued"] * 30
    assert answers[30].json()["error"] == "User not found"
    assert answers[31].status_code == 422
    assert [a.status_code for a in answers[32:]] == [422, 422]  # FastAPI validates the body
    assert "Traceback" not in err
    assert stats.json()["submitted"] == 31
    assert stats.json()["posts"] <= 3


@pytest.fixture
def redis_url(own_redis_server: RedisServer) -> str:
    """A private redis-server on a free port (skip without one, unless CI requires it)."""
    return own_redis_server.url


def produce(url: str, people: list[str]) -> None:
    client = redis.Redis.from_url(url)
    with client.pipeline(transaction=False) as pipe:
        for person in people:
            pipe.xadd("rewards", {"identifier": person})
        pipe.execute()
    client.close()


def group_consumer(url: str) -> list[str]:
    """A consumer of the group on the shared ledger, with short lease and claim times."""
    return [
        str(EXAMPLES / "redis_consumer.py"), "--redis", url, "--ledger", "test",
        "--lease", "1", "--claim-idle", "1", "--idle-exit", "4",
    ]  # fmt: skip


def consumer(url: str, journal: Path) -> list[str]:
    return [
        str(EXAMPLES / "redis_consumer.py"), "--redis", url, "--journal", str(journal),
        "--idle-exit", "1",
    ]  # fmt: skip


def test_redis_consumer(emulator: EmulatorThread, redis_url: str, tmp_path: Path) -> None:
    """Every stream message is issued once, acknowledged, and its outcome written back."""
    people = [f"guest{n}@example.com" for n in range(300)] + ["unknown.x@example.com"]
    produce(redis_url, [*people, "not-an-email", "555-0100"])
    unnamed = redis.Redis.from_url(redis_url)
    unnamed.xadd("rewards", {"email": "jane@example.com"})  # no identifier field at all
    unnamed.close()
    result = subprocess.run(
        [sys.executable, *consumer(redis_url, tmp_path / "j.db")],
        env=emulator.env(), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    assert client.xpending("rewards", "thanx-rewards")["pending"] == 0
    entries: list[tuple[str, dict[str, str]]] = client.xrange("rewards:outcomes")  # type: ignore[assignment]
    outcomes = {fields["identifier"]: fields["status"] for _, fields in entries}
    assert outcomes == {**dict.fromkeys(people[:-1], "issued"), people[-1]: "failed"}
    dead: list[tuple[str, dict[str, str]]] = client.xrange("rewards:dead")  # type: ignore[assignment]
    assert [fields["reason"] for _, fields in dead] == [
        "neither an email nor an E.164 phone",
        "phones must be E.164 with a leading '+'",
        "the message has no 'identifier' field (its fields: email)",
    ]
    client.close()
    assert emulator.issued() == {("email", p): 1 for p in people[:-1]}


@pytest.mark.slow
def test_redis_consumer_killed_and_restarted(redis_url: str, tmp_path: Path) -> None:
    """SIGKILL the consumer mid-stream, start it again: everyone issued exactly once, all acked."""
    people = [f"guest{n}@example.com" for n in range(3000)]
    produce(redis_url, people)
    journal = tmp_path / "j.db"
    with emulator_thread(start_delay=0.1, speed=2000.0) as emulator:
        env = emulator.env()
        first = start(consumer(redis_url, journal), env)
        wait_until(lambda: accepted_issues(emulator) >= 1, 60, "an accepted batch")
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=30)
        second = subprocess.run(
            [sys.executable, *consumer(redis_url, journal)],
            env=env, capture_output=True, text=True, timeout=180, check=False,
        )  # fmt: skip
        assert second.returncode == 0, second.stderr
        time.sleep(0.5)
        issued = emulator.issued()
    assert issued == {("email", p): 1 for p in people}
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    assert client.xpending("rewards", "thanx-rewards")["pending"] == 0
    client.close()


@pytest.mark.slow
def test_three_consumers_one_killed_mid_stream(redis_url: str) -> None:
    """A group of 3 on the shared ledger, one SIGKILLed: everyone issued once, acked, reported."""
    people = [f"guest{n}@example.com" for n in range(3000)]
    produce(redis_url, people)
    # Jobs take over a second: the victim dies before any of its jobs ended, so every
    # outcome of its work must come from the survivors.
    with emulator_thread(start_delay=1.0, speed=2000.0) as emulator:
        env = emulator.env()
        group = [start(group_consumer(redis_url), env) for _ in range(3)]
        wait_until(lambda: accepted_issues(emulator) >= 1, 60, "an accepted batch")
        group[0].send_signal(signal.SIGKILL)
        group[0].communicate(timeout=30)
        for survivor in group[1:]:
            _, err = survivor.communicate(timeout=180)
            assert survivor.returncode == 0, err
        time.sleep(0.5)
        issued = emulator.issued()
    assert issued == {("email", p): 1 for p in people}
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    assert client.xpending("rewards", "thanx-rewards")["pending"] == 0
    entries: list[tuple[str, dict[str, str]]] = client.xrange("rewards:outcomes")  # type: ignore[assignment]
    reported = {fields["identifier"] for _, fields in entries}
    client.close()
    # What the dead consumer had acknowledged came back through on_outcome, from its adopter.
    assert reported == set(people)


def test_bulk_csv_script(emulator: EmulatorThread, tmp_path: Path) -> None:
    """The bulk script issues a CSV, skips invalid rows, and a rerun issues nobody twice."""
    source = tmp_path / "guests.csv"
    rows = [f"Guest {n},guest{n}@example.com" for n in range(250)] + ["Bad,nope"]
    source.write_text("name,email\n" + "\n".join(rows) + "\n")
    results = tmp_path / "results.csv"
    args = [str(EXAMPLES / "bulk_csv.py"), str(source), str(results)]
    args += ["--journal", str(tmp_path / "bulk.db")]
    for _ in range(2):
        run = subprocess.run(
            [sys.executable, *args],
            env=emulator.env(), capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        assert "line 252: skipped 'nope'" in run.stderr
        assert "250 of 250 issued" in run.stdout
    with results.open(newline="") as file:
        assert {row["status"] for row in csv.DictReader(file)} == {"issued"}
    assert emulator.issued() == {("email", f"guest{n}@example.com"): 1 for n in range(250)}


def test_telemetry_console(emulator: EmulatorThread) -> None:
    """The telemetry example prints the batch's spans, its metrics and labelled log records."""
    emulator.emulator.state.faults.add("issue", status=503)  # one retry to see
    run = subprocess.run(
        [sys.executable, str(EXAMPLES / "telemetry_console.py")],
        env=emulator.env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    spans = [line for line in lines if line.startswith("span ")]
    assert [line.split(" (")[0] for line in spans] == [
        "span 'POST /partner/campaigns/issue'",
        "span 'POST /partner/campaigns/issue'",
        "span 'GET /partner/issuance_jobs/{job_id}'",
        "span 'thanx.batch'",
        "span 'signup wave'",
    ]
    assert "http.response.status_code=503" in spans[0]
    assert "http.request.resend_count=1" in spans[1]
    batch = spans[3]
    assert "(internal, root, 1 links)" in batch
    assert "thanx.batch.size=3" in batch
    assert "thanx.batch.state=completed" in batch
    assert "(internal, root, 1 links)" in spans[4]  # the caller's span links back
    assert [line for line in lines if line.startswith("outcome ")] == [
        "outcome jane@example.com issued",
        "outcome +14155551234 issued",
        "outcome unknown.sam@example.com failed",
    ]
    metrics = "\n".join(line for line in lines if line.startswith("metric "))
    assert "metric http.client.request.duration [s] error.type=503" in metrics
    assert "thanx.outcome.status=issued count=2" in metrics
    assert "thanx.outcome.status=failed count=1" in metrics
    assert "metric thanx.client.retries [{retry}] error.type=503" in metrics
    key = batch.split("thanx.batch.idempotency_key=")[1].split()[0]
    job = batch.split("thanx.job.id=")[1].split()[0]
    assert f"log thanx_async.batcher [batch={key} job={job}] batch {key} accepted" in run.stderr
    for secret in (SECRET_TOKEN, "jane@example.com", "4155551234"):
        assert secret not in "\n".join(spans) + metrics


@pytest.mark.slow
def test_testing_guide_example() -> None:
    """The testing guide's example suite passes, run by pytest the way a user runs it."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q"],
        cwd=EXAMPLES / "testing", capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 passed" in result.stdout


#: The webhook secret the web examples are given (a fake, never printed by them).
WEBHOOK_SECRET = "whsec-example-5d1c9e7a"
#: Jobs that last 0.3 s: a completion arrives after the POST's answer, as with Thanx.
WEBHOOK_JOBS: dict[str, Any] = {"start_delay": 0.3, "speed": 1_000_000.0}


def summary(emulator: EmulatorThread) -> dict[str, Any]:
    """The emulator's ``/_emulator/summary``, read over HTTP as a user would."""
    return httpx.get(f"{emulator.url}/_emulator/summary", timeout=10).json()  # type: ignore[no-any-return]


def test_webhooks_aiohttp_app_resolves_rewards_without_polling(tmp_path: Path) -> None:
    """The emulator delivers to the aiohttp example: every reward resolves, not one poll."""
    port = free_port()
    hook = f"http://127.0.0.1:{port}/webhooks/thanx"
    with emulator_thread(**WEBHOOK_JOBS, webhook_url=hook, webhook_secret=WEBHOOK_SECRET) as emu:
        env = emu.env(PORT=str(port), THANX_WEBHOOK_SECRET=WEBHOOK_SECRET)
        process = start([str(EXAMPLES / "webhooks_aiohttp.py")], env)
        try:
            wait_for_port(port, process)

            async def clients() -> tuple[list[tuple[int, Any]], int, dict[str, int]]:
                async with aiohttp.ClientSession() as session:

                    async def post(identifier: str) -> tuple[int, Any]:
                        url = f"http://127.0.0.1:{port}/rewards"
                        async with session.post(url, json={"identifier": identifier}) as r:
                            return r.status, await r.json()

                    people = [f"hook{n}@example.com" for n in range(40)]
                    answers = await asyncio.gather(
                        *(post(p) for p in [*people, "unknown.hook@example.com", "nope"])
                    )
                    forged = b'{"event":"reward_batch.completed","data":{}}'
                    headers = {"X-Thanx-Signature": "0" * 64}
                    async with session.post(hook, data=forged, headers=headers) as r:
                        refused = r.status
                    async with session.get(f"http://127.0.0.1:{port}/stats") as r:
                        stats = await r.json()
                    return answers, refused, stats

            answers, refused, stats = asyncio.run(clients())
        finally:
            out, err = stop(process)
        counts = summary(emu)
    assert process.returncode == 0, err
    assert "Traceback" not in err
    assert WEBHOOK_SECRET not in out + err
    assert [body["status"] for _, body in answers[:40]] == ["issued"] * 40
    assert answers[40][1]["status"] == "failed"
    assert answers[41][0] == 422
    assert refused == 401
    assert stats["polls"] == 0
    assert stats["webhooks_accepted"] >= 2  # a completion per job, and reward.issued
    assert stats["webhooks_refused"] == 1
    assert "get_job" not in counts["requests"]["by_route"]  # no poll reached the emulator
    assert counts["rewards"]["rewarded_more_than_once"] == 0


def test_webhooks_aiohttp_app_needs_its_secret() -> None:
    """Without THANX_WEBHOOK_SECRET the example refuses to start, and says why."""
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "webhooks_aiohttp.py")],
        env=cli_env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "set THANX_WEBHOOK_SECRET" in result.stderr


def test_webhooks_fastapi_replicas_share_deliveries_through_redis(redis_url: str) -> None:
    """Two uvicorn replicas: rewards asked of A, webhooks posted to B, resolved in A, 0 polls."""
    a, b = free_port(), free_port()
    hook = f"http://127.0.0.1:{b}/webhooks/thanx"
    args = ["-m", "uvicorn", "webhooks_fastapi:app", "--app-dir", str(EXAMPLES)]
    with emulator_thread(**WEBHOOK_JOBS, webhook_url=hook, webhook_secret=WEBHOOK_SECRET) as emu:
        env = emu.env(THANX_WEBHOOK_SECRET=WEBHOOK_SECRET, REDIS_URL=redis_url)
        replicas = [start([*args, "--host", "127.0.0.1", "--port", str(p)], env) for p in (a, b)]
        try:
            for port, replica in zip((a, b), replicas, strict=True):
                wait_for_port(port, replica)  # uvicorn listens once the lifespan has started

            async def clients() -> tuple[list[httpx.Response], list[dict[str, int]]]:
                async with httpx.AsyncClient(timeout=30) as c:
                    people = [f"+1415666{n:04d}" for n in range(1, 31)] + ["unknown.r@example.com"]
                    url = f"http://127.0.0.1:{a}/rewards"
                    answers = await asyncio.gather(
                        *(c.post(url, json={"identifier": p}) for p in people)
                    )
                    stats = [(await c.get(f"http://127.0.0.1:{p}/stats")).json() for p in (a, b)]
                    return list(answers), stats

            answers, (stats_a, stats_b) = asyncio.run(clients())
        finally:
            outputs = [stop(replica) for replica in replicas]
        counts = summary(emu)
    for replica, (_, err) in zip(replicas, outputs, strict=True):
        assert replica.returncode == 0, err
        assert "Application shutdown complete" in err
        assert "Traceback" not in err
    assert [r.json()["status"] for r in answers[:30]] == ["issued"] * 30
    assert answers[30].json()["error"] == "User not found"
    assert stats_a["polls"] == 0
    assert stats_a["posts"] >= 1
    assert stats_a["webhooks_accepted"] == 0  # A heard of its jobs from B, through Redis
    assert stats_b["webhooks_accepted"] >= 1
    assert "get_job" not in counts["requests"]["by_route"]
