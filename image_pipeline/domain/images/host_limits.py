"""Per-host download limits: at most N downloads in flight per image host.

Within one run an asyncio.Semaphore per host does it. Across runs, processes and machines (chunk steps
on Celery/Kubernetes workers) the limit must live in Redis: a host has N slots, each a redis-py `Lock`
with a short lease that its holder renews while the download runs. A worker killed while holding a
slot stops renewing, so the slot comes back within one lease (a counter would leak it forever; a lease
as long as the fetch deadline would stall the retry of a crashed run for that long).
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

# A dead holder's slot is free again within this many seconds; live holders renew every third of it.
HOST_SLOT_LEASE_S = 10.0


class HostLimiter(Protocol):
    def hold(self, host: str) -> AbstractAsyncContextManager[None]: ...

    async def aclose(self) -> None: ...


class LocalHostLimiter:
    """Per-host semaphores of this event loop only."""

    def __init__(self, per_host: int) -> None:
        self._sems: dict[str, asyncio.Semaphore] = defaultdict(lambda: asyncio.Semaphore(per_host))

    def hold(self, host: str) -> AbstractAsyncContextManager[None]:
        return self._sems[host]  # type: ignore[return-value]  (a Semaphore is an async context manager)

    async def aclose(self) -> None:
        return None


class RedisHostLimiter:
    """`per_host` slots per host shared by every process that uses the same Redis. Redis is a cache in
    this service, never a dependency: while it is unreachable the limit falls back to this process."""

    def __init__(self, redis_url: str, per_host: int, lease: float = HOST_SLOT_LEASE_S, poll: float = 0.05) -> None:
        import redis.asyncio as aioredis

        self.client = aioredis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=2)
        self.per_host, self.lease, self.poll = per_host, lease, poll
        self.local = LocalHostLimiter(per_host)

    @asynccontextmanager
    async def hold(self, host: str) -> AsyncIterator[None]:
        from redis.exceptions import LockError, RedisError

        while True:
            for slot in random.sample(range(self.per_host), self.per_host):
                lock = self.client.lock(f"imgpipe:host-slot:{host}:{slot}", timeout=self.lease)
                try:
                    acquired = await lock.acquire(blocking=False)
                except RedisError:
                    async with self.local.hold(host):
                        yield
                    return
                if acquired:
                    renew = asyncio.create_task(self._renew(lock))
                    try:
                        yield
                    finally:
                        renew.cancel()
                        try:
                            await lock.release()
                        except (LockError, RedisError):
                            pass  # it timed out meanwhile (or Redis went away): the timeout frees it
                    return
            await asyncio.sleep(self.poll * (0.5 + random.random()))  # jitter: waiters don't march in step

    async def _renew(self, lock) -> None:  # redis.asyncio.lock.Lock
        """Reset the lease every third of it while the slot is held."""
        from redis.exceptions import LockError, RedisError

        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                await lock.reacquire()
            except (LockError, RedisError):
                return  # lost (Redis flushed or away): the download finishes; the limit is best effort then

    async def aclose(self) -> None:
        await self.client.aclose()


def make_host_limiter(per_host: int, redis_url: str | None, lease: float = HOST_SLOT_LEASE_S) -> HostLimiter:
    """Redis-backed (deployment-wide) when a Redis URL is configured, else per run."""
    if redis_url:
        return RedisHostLimiter(redis_url, per_host, lease)
    return LocalHostLimiter(per_host)
