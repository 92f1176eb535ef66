"""RedisJournal's arguments: what it refuses at construction, and a client passed in."""

from __future__ import annotations

import pytest
import redis.asyncio

from tests.redis.journal_helpers import JOB, PART, admit_new, item, unique_name
from tests.redis_support import RedisServer
from thanx_async._journal_format import Recorded
from thanx_async.redis import RedisJournal


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"name": ""}, "name must be"),
        ({"name": "a{b}"}, "name must be"),
        ({"name": "two words"}, "name must be"),
        ({"name": "ok", "instance": "pod#1"}, "instance must be"),
        ({"name": "ok", "instance": ""}, "instance must be"),
        ({"name": "ok", "lease": 0}, "must be > 0"),
        ({"name": "ok", "dedupe_window": -1}, "must be > 0"),
        ({"name": "ok", "unreachable_timeout": 0}, "must be > 0"),
    ],
)
def test_bad_arguments_are_refused_at_construction(
    options: dict[str, object], message: str
) -> None:
    """Malformed names, instances and durations raise ValueError before anything runs."""
    with pytest.raises(ValueError, match=message):
        RedisJournal("redis://127.0.0.1:6379/0", **options)  # type: ignore[arg-type]


def test_a_malformed_url_or_a_foreign_client_is_refused() -> None:
    """A URL redis-py cannot read raises ValueError; a non-asyncio client TypeError."""
    with pytest.raises(ValueError):
        RedisJournal("http://127.0.0.1:6379", name="rewards")
    with pytest.raises(TypeError, match=r"redis\.asyncio\.Redis"):
        RedisJournal(object(), name="rewards")  # type: ignore[arg-type]


def test_the_repr_never_shows_the_url() -> None:
    """The URL may hold a password: the repr names the journal only."""
    journal = RedisJournal("redis://:hunter2@127.0.0.1:6379/0", name="rewards", instance="pod-0")
    assert repr(journal) == "RedisJournal('rewards', instance='pod-0')"


async def test_operations_need_an_open_journal(redis_server: RedisServer) -> None:
    """Before open() and after aclose(), operations raise RuntimeError; open() works once."""
    journal = RedisJournal(redis_server.url, name=unique_name())
    with pytest.raises(RuntimeError, match="not open"):
        journal.admit_many([item("x@example.com")])
    await journal.open()
    with pytest.raises(RuntimeError, match="opened already"):
        await journal.open()
    await journal.aclose()
    with pytest.raises(RuntimeError, match="not open"):
        journal.seal(PART, "key", b"body", [1])
    with pytest.raises(RuntimeError, match="not open"):
        await journal.adopt()


@pytest.mark.parametrize("decode_responses", [False, True])
async def test_a_client_passed_in_is_used_and_left_open(
    redis_server: RedisServer, decode_responses: bool
) -> None:
    """A redis.asyncio.Redis given (even decoding responses) works, bytes exact; it stays open."""
    client = redis.asyncio.Redis.from_url(redis_server.url, decode_responses=decode_responses)
    name = unique_name()
    body = '{"identifiers":["caf\u00e9@example.com"]}'.encode()
    first = RedisJournal(client, name=name)
    await first.open()
    ids = await admit_new(first, [item("a@example.com"), item("b@example.com", "d")])
    sealed = await first.seal(PART, "key-1", body, ids[:1])
    done = await first.seal(PART, "key-2", b"other", ids[1:])
    await first.finished(done, JOB)
    await first.aclose()
    assert await client.ping()  # not closed by the journal
    second = RedisJournal(client, name=name)
    batch, unreported = (await second.open()).batches
    assert (batch.batch_id, batch.key, batch.body, batch.final) == (sealed, "key-1", body, None)
    # Finished, never accepted: its job id is read from its final job.
    assert (unreported.batch_id, unreported.final, unreported.job_id) == (done, JOB, "job-1")
    assert await second.admit_many([item("b@example.com", "d")]) == [Recorded(done, JOB, 0, 1)]
    await second.aclose()
    await client.aclose()
