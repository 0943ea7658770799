"""Bounded per-process caches of heavy clients (S3 client, database engine, TLS context), keyed by the
configuration they were built from.

Why: a process that executes many runs (a Celery run worker under CeleryRunLauncher, the in-process
executor of a long-lived process) builds a run's resources anew for every run. Building a boto3 client
parses botocore's JSON models, a new SQLAlchemy engine opens new database connections, a TLS context
loads the CA bundle: CPU spent on every run for objects that do not change while the configuration
does not (docs/scale-out.md, "Measured"). These objects are thread-safe and meant to be
shared (boto3 clients, SQLAlchemy engines and their pools, `ssl.SSLContext`).

Rules that keep this from being hidden global state:
- The key is every argument the client is built from: a different configuration gets its own client,
  the same configuration the same one. Nothing else is cached (no per-run or per-request data).
- Bounded: at most `maxsize` clients per cache; the least recently used one is closed (`close`) when
  another configuration needs room, so a test process creating many databases does not hoard
  connections.
- A forked child starts empty (connections and sockets must not be shared across `fork`). The
  parent's objects are kept referenced in the child, never closed nor garbage-collected there: closing
  a database connection sends a terminate message on the socket the parent still uses.
- `clear()` closes and drops everything (tests, or a process that wants to start afresh).
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")

_ALL: weakref.WeakSet[ProcessCache] = weakref.WeakSet()
_INHERITED: list[object] = []  # in a forked child: the parent's clients, kept alive and unused


class ProcessCache(Generic[T]):
    """`get(*key)` returns the client built by `factory(*key)`, building it on first use."""

    def __init__(self, factory: Callable[..., T], *, maxsize: int = 4, close: Callable[[T], object] | None = None):
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.factory, self.maxsize, self.close = factory, maxsize, close
        self._items: OrderedDict[tuple, T] = OrderedDict()
        self._lock = threading.Lock()
        _ALL.add(self)

    def get(self, *key: Hashable) -> T:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = self.factory(*key)  # outside the lock: building may take a while (and may fail)
        evicted = []
        with self._lock:
            if key in self._items:  # another thread built it meanwhile: keep theirs
                evicted.append(value)
                value = self._items[key]
                self._items.move_to_end(key)
            else:
                self._items[key] = value
                while len(self._items) > self.maxsize:
                    evicted.append(self._items.popitem(last=False)[1])
        for old in evicted:
            self._close(old)
        return value

    def __len__(self) -> int:
        return len(self._items)

    def clear(self, *, close: bool = True) -> None:
        with self._lock:
            items, self._items = list(self._items.values()), OrderedDict()
        if close:
            for old in items:
                self._close(old)

    def _close(self, value: T) -> None:
        if self.close is not None:
            try:
                self.close(value)
            except Exception:  # closing a client must not fail its user
                pass


def _after_fork_in_child() -> None:
    # The lock may have been held by another thread at fork time: replace it, then set aside (not
    # close) what the parent built.
    for cache in list(_ALL):
        cache._lock = threading.Lock()
        _INHERITED.extend(cache._items.values())
        cache._items = OrderedDict()


os.register_at_fork(after_in_child=_after_fork_in_child)
