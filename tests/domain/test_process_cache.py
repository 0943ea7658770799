"""The per-process client cache: one client per configuration, bounded, closed when evicted, and a
forked child never uses its parent's clients."""

from __future__ import annotations

import os

from image_pipeline.domain.process_cache import ProcessCache


class Client:
    def __init__(self, *config: object) -> None:
        self.config, self.closed = config, False

    def close(self) -> None:
        self.closed = True


def make_cache(maxsize: int = 4) -> tuple[ProcessCache[Client], list[tuple]]:
    built: list[tuple] = []

    def factory(*config: object) -> Client:
        built.append(config)
        return Client(*config)

    return ProcessCache(factory, maxsize=maxsize, close=Client.close), built


def test_same_configuration_same_client_other_configuration_other_client() -> None:
    cache, built = make_cache()
    a = cache.get("http://s3", "us-east-1")
    assert cache.get("http://s3", "us-east-1") is a  # reused: built once
    b = cache.get("http://s3", "eu-west-1")
    assert b is not a and b.config == ("http://s3", "eu-west-1")
    assert built == [("http://s3", "us-east-1"), ("http://s3", "eu-west-1")]
    assert not a.closed and not b.closed


def test_bounded_least_recently_used_is_closed() -> None:
    cache, built = make_cache(maxsize=2)
    a, b = cache.get("a"), cache.get("b")
    cache.get("a")  # a is now the most recently used
    c = cache.get("c")
    assert len(cache) == 2 and b.closed and not a.closed and not c.closed
    assert cache.get("a") is a
    assert cache.get("b") is not b  # rebuilt after eviction
    assert built == [("a",), ("b",), ("c",), ("b",)]


def test_clear_closes_everything_and_rebuilds_on_next_use() -> None:
    cache, _ = make_cache()
    a = cache.get("a")
    cache.clear()
    assert a.closed and len(cache) == 0
    assert cache.get("a") is not a


def test_a_forked_child_builds_its_own_clients_and_leaves_the_parents_open() -> None:
    cache, _ = make_cache()
    parent = cache.get("db")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without running pytest's teardown
        ok = len(cache) == 0 and cache.get("db") is not parent and not parent.closed
        os.write(write, b"1" if ok else b"0")
        os._exit(0)
    os.close(write)
    answer = os.read(read, 1)
    os.waitpid(pid, 0)
    os.close(read)
    assert answer == b"1"
    assert cache.get("db") is parent and not parent.closed
