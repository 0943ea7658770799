"""Per-host download limits: at most N downloads in flight per image host.

Within one run an asyncio.Semaphore per host does it. Across runs, processes and machines (chunk steps
on Celery/Kubernetes workers) the limit must live in Redis: a host has N slots, each a redis-py `Lock`
with a short lease that its holder renews while the download runs. A worker killed while holding a
slot stops renewing, so the slot comes back within one lease (a counter would leak it forever; a lease
as long as the fetch deadline would stall the retry of a crashed run for that long).

Waiting for a slot has a deadline (`IMGPIPE_HOST_SLOT_WAIT`): past it the URL fails with a transient
error instead of holding its run open behind a host that other runs keep busy. Within one process
the waiters for a host queue in order and only the first of them asks Redis, so every run contending
for a host gets about the same share of its slots: a run with 30 URLs waiting on a host no longer
wins 30 times as often as a run with one (requests are per tenant, so this is fairness between
tenants too, within the coordinator's per-tenant run limit).

A host that pushes back (429 or 503, with or without `Retry-After`) is paused: `pause(host, s)` makes
every download of that host wait that long before taking a slot, not only the URL that was told, so
a run does not keep hammering a host that asked it to slow down. With Redis the pause is a key with
that expiry, seen by every process; waiting out a pause counts against the slot wait deadline.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

from image_pipeline.domain.images.url_policy import FetchError

# A dead holder's slot is free again within this many seconds; live holders renew every third of it.
HOST_SLOT_LEASE_S = 10.0
DEFAULT_SLOT_WAIT_S = 120.0


class SlotWaitTimeout(FetchError):
    """No download slot for the host came free within the wait deadline (transient: try again later)."""

    def __init__(self, host: str, waited: float) -> None:
        super().__init__(f"no download slot for {host} came free within {waited:g} s (the host is busy)")


class HostLimiter(Protocol):
    def hold(self, host: str) -> AbstractAsyncContextManager[None]: ...

    async def pause(self, host: str, seconds: float) -> None:
        """No new download of `host` starts for `seconds` (a longer pause already set stays)."""
        ...

    async def aclose(self) -> None: ...


class LocalHostLimiter:
    """Per-host semaphores of this event loop only (asyncio's semaphore wakes its waiters in order)."""

    def __init__(self, per_host: int, wait: float = DEFAULT_SLOT_WAIT_S) -> None:
        self._sems: dict[str, asyncio.Semaphore] = defaultdict(lambda: asyncio.Semaphore(per_host))
        self._paused_until: dict[str, float] = {}  # host -> loop time before which nothing starts
        self.wait = wait

    async def pause(self, host: str, seconds: float) -> None:
        until = asyncio.get_running_loop().time() + seconds
        if until > self._paused_until.get(host, 0.0):
            self._paused_until[host] = until

    async def wait_pause(self, host: str) -> None:
        """Until `host` is no longer paused (a pause set meanwhile is waited out too)."""
        loop = asyncio.get_running_loop()
        while (left := self._paused_until.get(host, 0.0) - loop.time()) > 0:
            await asyncio.sleep(left)

    @asynccontextmanager
    async def hold(self, host: str) -> AsyncIterator[None]:
        sem = self._sems[host]
        try:
            async with asyncio.timeout(self.wait):
                while True:
                    await self.wait_pause(host)
                    await sem.acquire()
                    if self._paused_until.get(host, 0.0) <= asyncio.get_running_loop().time():
                        break
                    sem.release()  # paused while this one waited for its slot: wait the pause out first
        except TimeoutError:
            raise SlotWaitTimeout(host, self.wait) from None
        try:
            yield
        finally:
            sem.release()

    async def aclose(self) -> None:
        return None


class RedisHostLimiter:
    """`per_host` slots per host shared by every process that uses the same Redis. Redis is a cache in
    this service, never a dependency: while it is unreachable the limit falls back to this process."""

    def __init__(
        self,
        redis_url: str,
        per_host: int,
        lease: float = HOST_SLOT_LEASE_S,
        poll: float = 0.05,
        wait: float = DEFAULT_SLOT_WAIT_S,
    ) -> None:
        import redis.asyncio as aioredis

        self.client = aioredis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=2)
        self.per_host, self.lease, self.poll, self.wait = per_host, lease, poll, wait
        self.local = LocalHostLimiter(per_host, wait)
        self._heads: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)  # FIFO: one asker per host

    @asynccontextmanager
    async def hold(self, host: str) -> AsyncIterator[None]:
        from redis.exceptions import RedisError

        try:
            async with asyncio.timeout(self.wait):
                async with self._heads[host]:
                    await self.local.wait_pause(host)
                    await self._wait_shared_pause(host)
                    lock = await self._take_slot(host)
        except TimeoutError:
            raise SlotWaitTimeout(host, self.wait) from None
        except RedisError:
            lock = None
        if lock is None:  # Redis is unreachable: this process's own limit
            async with self.local.hold(host):
                yield
            return
        renew = asyncio.create_task(self._renew(lock))
        try:
            yield
        finally:
            renew.cancel()
            await self._release(lock)

    async def pause(self, host: str, seconds: float) -> None:
        """Paused here at once, and for every process through a key that expires with the pause."""
        from redis.exceptions import RedisError

        await self.local.pause(host, seconds)
        ms = max(1, int(seconds * 1000))
        try:
            if await self.client.pttl(_pause_key(host)) < ms:  # a longer pause already set stays
                await self.client.set(_pause_key(host), "1", px=ms)
        except RedisError:
            pass  # Redis is away: this process still pauses

    async def _wait_shared_pause(self, host: str) -> None:
        """Until the pause another process set for `host` has expired."""
        from redis.exceptions import RedisError

        while True:
            try:
                left_ms = await self.client.pttl(_pause_key(host))
            except RedisError:
                return
            if left_ms <= 0:
                return
            await asyncio.sleep(left_ms / 1000)

    async def _take_slot(self, host: str):  # -> redis.asyncio.lock.Lock
        """A free slot of `host`, polled with jitter (waiters in other processes don't march in step)."""
        while True:
            for slot in random.sample(range(self.per_host), self.per_host):
                lock = self.client.lock(f"imgpipe:host-slot:{host}:{slot}", timeout=self.lease)
                if await lock.acquire(blocking=False):
                    return lock
            await asyncio.sleep(self.poll * (0.5 + random.random()))

    @staticmethod
    async def _release(lock) -> None:
        from redis.exceptions import LockError, RedisError

        try:
            await lock.release()
        except (LockError, RedisError):
            pass  # it timed out meanwhile (or Redis went away): the lease frees it

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


def _pause_key(host: str) -> str:
    return f"imgpipe:host-pause:{host}"


def make_host_limiter(
    per_host: int, redis_url: str | None, lease: float = HOST_SLOT_LEASE_S, wait: float = DEFAULT_SLOT_WAIT_S
) -> HostLimiter:
    """Redis-backed (deployment-wide) when a Redis URL is configured, else per run."""
    if redis_url:
        return RedisHostLimiter(redis_url, per_host, lease, wait=wait)
    return LocalHostLimiter(per_host, wait)
