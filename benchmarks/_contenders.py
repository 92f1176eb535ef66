"""One shape for every contender: ``submit(identifier, partition) -> future``, then ``finish``.

The harness drives RewardBatcher and the baselines through these adapters so
the producer code, and its cost, is identical for all of them.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any, Protocol

import thanx_async as ta
from benchmarks._emulator import partition_ids
from benchmarks.baselines.handrolled import QueueBatcher
from benchmarks.baselines.naive import NaiveIssuer
from thanx_async.testing import (
    DEFAULT_ACCESS_TOKEN,
    DEFAULT_CAMPAIGN_ID,
    DEFAULT_CLIENT_ID,
    DEFAULT_MERCHANT_ID,
    DEFAULT_VARIANT_ID,
)

DEFAULTS = {
    "merchant_id": DEFAULT_MERCHANT_ID,
    "campaign_id": DEFAULT_CAMPAIGN_ID,
    "variant_id": DEFAULT_VARIANT_ID,
}


def journal_supported() -> bool:
    """Whether this RewardBatcher takes ``journal=`` (the journal is landing separately)."""
    return "journal" in inspect.signature(ta.RewardBatcher).parameters


class Contender(Protocol):
    name: str

    @property
    def client(self) -> ta.ThanxClient | None: ...

    async def submit(self, identifier: str, partition: int | None) -> asyncio.Future[Any]: ...

    async def finish(self) -> None:
        """The input is over: send whatever is still buffered."""

    async def aclose(self) -> None: ...

    def extra(self) -> dict[str, Any]:
        """Contender-specific counters for the result."""


def _partition_kwargs(partition: int | None) -> dict[str, str]:
    if partition is None:
        return {}
    campaign, variant = partition_ids(partition)
    return {"campaign_id": campaign, "variant_id": variant}


_KWARGS = [_partition_kwargs(None)] + [_partition_kwargs(k) for k in range(20)]


class SdkContender:
    name = "sdk"

    def __init__(self, client: ta.ThanxClient, options: dict[str, Any]) -> None:
        self.client = client
        self.batcher = ta.RewardBatcher(
            client,
            merchant_id=DEFAULTS["merchant_id"],
            campaign_id=DEFAULTS["campaign_id"],
            variant_id=DEFAULTS["variant_id"],
            **options,
        )

    async def submit(self, identifier: str, partition: int | None) -> asyncio.Future[Any]:
        if partition is None:
            return await self.batcher.submit(identifier)
        return await self.batcher.submit(identifier, **_KWARGS[partition + 1])

    async def finish(self) -> None:
        await self.batcher.flush()

    async def aclose(self) -> None:
        try:
            await self.batcher.aclose()
        finally:
            await self.client.aclose()

    def extra(self) -> dict[str, Any]:
        stats = self.batcher.stats()
        return {"sdk_posts": stats.posts, "sdk_polls": stats.polls, "retries": stats.retries}


class FloorContender:
    """The contract floor (``benchmarks/_floor.py``), driven exactly like RewardBatcher."""

    name = "floor"

    def __init__(
        self, client: ta.ThanxClient, max_batch_size: int, *, deferred: bool, max_pending: int
    ) -> None:
        from benchmarks._floor import ContractFloor  # noqa: PLC0415 - only W1-floor needs it

        self.client = client
        self.impl = ContractFloor(
            client,
            **DEFAULTS,
            max_batch_size=max_batch_size,
            max_pending=max_pending,
            deferred=deferred,
        )

    async def submit(self, identifier: str, partition: int | None) -> asyncio.Future[Any]:
        if partition is not None:
            raise ValueError("the contract floor has one partition")
        return await self.impl.submit(identifier)

    async def finish(self) -> None:
        await self.impl.flush()

    async def aclose(self) -> None:
        try:
            await self.impl.aclose()
        finally:
            await self.client.aclose()

    def extra(self) -> dict[str, Any]:
        return {"retries": self.client.stats.retries}


class _BaselineContender:
    """Adapter for a baseline whose ``submit`` is synchronous."""

    name = ""

    def __init__(self, client: ta.ThanxClient, impl: Any) -> None:
        self.client = client
        self.impl = impl

    async def submit(self, identifier: str, partition: int | None) -> asyncio.Future[Any]:
        if partition is None:
            return self.impl.submit(identifier)  # type: ignore[no-any-return]
        return self.impl.submit(identifier, **_KWARGS[partition + 1])  # type: ignore[no-any-return]

    async def finish(self) -> None:
        return

    async def aclose(self) -> None:
        try:
            if hasattr(self.impl, "aclose"):
                await self.impl.aclose()
        finally:
            await self.client.aclose()

    def extra(self) -> dict[str, Any]:
        assert self.client is not None
        return {"retries": self.client.stats.retries}


class HandrolledContender(_BaselineContender):
    name = "handrolled"

    async def finish(self) -> None:
        await self.impl.aclose()  # sends the partial batches; outcomes follow

    async def aclose(self) -> None:
        await self.client.aclose()


class DataLoaderContender(_BaselineContender):
    name = "dataloader"

    def extra(self) -> dict[str, Any]:
        return super().extra() | {"batch_calls": self.impl.batches}


class NaiveContender(_BaselineContender):
    name = "naive"


class NullContender:
    """Resolves every future at once with a canned outcome: the harness's own cost."""

    name = "null"
    client = None

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._outcome = _NullOutcome()

    async def submit(self, identifier: str, partition: int | None) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = self._loop.create_future()
        future.set_result(self._outcome)
        return future

    async def finish(self) -> None:
        return

    async def aclose(self) -> None:
        return

    def extra(self) -> dict[str, Any]:
        return {}


class _NullOutcome:
    issued = True
    job = None

    def __init__(self) -> None:
        self.job = _NullJob()


class _NullJob:
    id = "null"
    created_at = None
    completed_at = None


def make_client(url: str, rate_limit: dict[str, float]) -> ta.ThanxClient:
    return ta.ThanxClient(
        client_id=DEFAULT_CLIENT_ID,
        access_token=DEFAULT_ACCESS_TOKEN,
        base_url=url,
        rate_limit=ta.RateLimit(**rate_limit),  # type: ignore[arg-type]
    )


def make_contender(name: str, url: str, spec: dict[str, Any]) -> Contender:
    """Build a contender for a run; ``spec`` carries rate limit and batching options."""
    if name == "null":
        return NullContender()
    client = make_client(url, spec["client_rate_limit"])
    batch_size = spec.get("max_batch_size", 10_000)
    max_wait = spec.get("max_wait", 1.0)
    if name.startswith("sdk"):
        options: dict[str, Any] = {"max_batch_size": batch_size, "max_wait": max_wait}
        options.update(spec.get("sdk_options", {}))
        if spec.get("journal"):
            options["journal"] = spec["journal"]
        contender = SdkContender(client, options)
        contender.name = name
        return contender
    if name in ("floor", "floor-deferred"):
        floor = FloorContender(
            client,
            batch_size,
            deferred=name == "floor-deferred",
            max_pending=spec.get("max_pending", 100_000),
        )
        floor.name = name
        return floor
    if name == "handrolled":
        impl: Any = QueueBatcher(client, **DEFAULTS, max_batch_size=batch_size, max_wait=max_wait)
        return HandrolledContender(client, impl)
    if name == "dataloader":
        # Imported here: aiodataloader is only in the `bench` extra, not in CI's venv.
        from benchmarks.baselines.dataloader import DataLoaderIssuer  # noqa: PLC0415

        return DataLoaderContender(
            client, DataLoaderIssuer(client, **DEFAULTS, max_batch_size=batch_size)
        )
    if name == "naive":
        return NaiveContender(client, NaiveIssuer(client, **DEFAULTS))
    raise ValueError(f"unknown contender {name!r}")
