"""Transient download failures tried again inside the run, against a real loopback image server:
Retry-After honoured (seconds and HTTP dates) and bounded, backoff with full jitter, a host that pushes
back paused for all of its URLs, and every failed URL given its failure class.

    .venv/bin/python -m pytest -q -s tests/domain/images/test_fetch_retry.py -k measured   # prints the delays
"""

from __future__ import annotations

import asyncio
import random
import socket
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from image_pipeline.domain.db.requests import UrlResult
from image_pipeline.domain.images.failures import FAILURE_CLASSES, classify_failure
from image_pipeline.domain.images.fetch import fetch, make_client
from image_pipeline.domain.images.fetch_retry import FetchGaveUp, FetchRetry, fetch_with_retries, retry_after_seconds
from image_pipeline.domain.images.host_limits import LocalHostLimiter, RedisHostLimiter
from image_pipeline.domain.images.url_policy import FetchPolicy
from image_pipeline.domain.images.worker import ProcessOptions, WorkItem, process_items
from image_pipeline.domain.objects.local import LocalStore
from image_pipeline.domain.settings import Settings, parse_allow
from tests.support.inputs import make_image
from tests.support.servers import FlakyRoute, ImageServer

JPEG = make_image("JPEG", (64, 48))


@pytest.fixture
def server():
    srv = ImageServer().start()
    yield srv
    srv.close()


def _policy(server: ImageServer, **kw) -> FetchPolicy:
    return FetchPolicy(allow=parse_allow(server.allow), **kw)


def _process(server, tmp_path, urls: list[str], retry: FetchRetry, **kw) -> list[UrlResult]:
    out: list[UrlResult] = []
    policy = kw.pop("policy", None) or _policy(server)
    opts = ProcessOptions(fetch_retry=retry, **kw)
    items = [WorkItem(i, 2, u) for i, u in enumerate(urls)]
    asyncio.run(
        process_items(
            items,
            request_id="r1",
            store=LocalStore(tmp_path, "http://x"),
            policy=policy,
            opts=opts,
            on_result=out.append,
        )
    )
    return sorted(out, key=lambda r: r.idx)


def _retrying(server, path: str, retry: FetchRetry, limiter=None) -> tuple[list[float], object]:
    """fetch_with_retries over a real fetch of `path`; the waits it asked for (not slept) and its outcome."""
    waits: list[float] = []

    async def no_sleep(s: float) -> None:
        waits.append(s)

    async def go():
        async with make_client(_policy(server)) as client:
            try:
                return await fetch_with_retries(
                    lambda: fetch(client, server.url(path), _policy(server)), retry, limiter, sleep=no_sleep
                )
            except FetchGaveUp as exc:
                return exc

    return waits, asyncio.run(go())


def test_measured_429_with_retry_after_1_twice_then_200(server, tmp_path) -> None:
    """The measurement in docs/fetching.md: the URL succeeds on its third try, each after the host's
    Retry-After of 1 s (a lower bound: waiting less would ignore the header)."""
    route = FlakyRoute([(429, {"Retry-After": "1"})] * 2, JPEG)
    server.routes["/busy.jpg"] = route
    [r] = _process(server, tmp_path, [server.url("/busy.jpg")], FetchRetry(retries=3))
    assert r.status == "done" and r.failure_class is None, r
    assert len(route.at) == 3
    t0 = route.at[0]
    stamps = [datetime.fromtimestamp(t, UTC).strftime("%H:%M:%S.%f")[:-3] for t in route.wall]
    print("\nattempts at (UTC):", stamps, "answers: 429, 429, 200")
    print("attempts at (s after the first):", [round(t - t0, 3) for t in route.at])
    print("gaps between attempts (s):", [round(g, 3) for g in route.gaps])
    assert all(g >= 1.0 for g in route.gaps), route.gaps


def test_retry_after_http_date_is_honoured(server) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=5), usegmt=True)
    server.routes["/d.jpg"] = FlakyRoute([(503, {"Retry-After": when})], JPEG)
    waits, fetched = _retrying(server, "/d.jpg", FetchRetry(retries=2))
    assert fetched.status == 200
    [w] = waits
    assert 3.0 <= w <= 5.0, w  # the date is whole seconds, sent a moment ago


def test_retry_after_beyond_the_cap_is_bounded(server) -> None:
    server.routes["/long.jpg"] = FlakyRoute([(429, {"Retry-After": "3600"}), (503, {"Retry-After": "86400"})], JPEG)
    waits, fetched = _retrying(server, "/long.jpg", FetchRetry(retries=3, retry_after_max=2.5))
    assert fetched.status == 200 and waits == [2.5, 2.5]


def test_without_retry_after_the_backoff_is_full_jitter(server) -> None:
    server.routes["/gw.jpg"] = FlakyRoute([502, 504, 502, 504], JPEG)
    retry = FetchRetry(retries=4, backoff=0.4, backoff_max=1.0)
    waits, fetched = _retrying(server, "/gw.jpg", retry)
    assert fetched.status == 200 and len(waits) == 4
    for n, w in enumerate(waits, 1):  # each uniform in [0, min(cap, base * 2^(n-1))]
        assert 0 <= w <= min(1.0, 0.4 * 2 ** (n - 1)), waits
    rng = random.Random(1)
    spread = [retry.delay(3, None, rng) for _ in range(2000)]
    assert min(spread) < 0.1 and max(spread) > 0.9  # the whole range [0, 1.0], not a fixed step


def test_503_forever_is_transient_after_every_try(server, tmp_path) -> None:
    route = FlakyRoute([503] * 100, JPEG)
    server.routes["/down.jpg"] = route
    [r] = _process(server, tmp_path, [server.url("/down.jpg")], FetchRetry(retries=2, backoff=0.01))
    assert r.status == "failed" and r.failure_class == "transient", r
    assert len(route.at) == 3 and "503" in r.error and "3 tries" in r.error


def test_404_is_permanent_without_a_retry(server, tmp_path) -> None:
    route = FlakyRoute([404, 404], JPEG)
    server.routes["/gone.jpg"] = route
    [r] = _process(server, tmp_path, [server.url("/gone.jpg")], FetchRetry(retries=3, backoff=0.01))
    assert (r.status, r.failure_class, len(route.at)) == ("failed", "permanent", 1), r
    assert r.error == "HTTP 404 from image server"


def test_each_failure_has_its_class(server, tmp_path) -> None:
    server.add("/ok.jpg", JPEG)
    server.add("/page.jpg", b"<!doctype html><html></html>", "text/html")
    server.add("/big.jpg", b"x" * 5000)
    server.routes["/slow.jpg"] = slow = FlakyRoute([], JPEG, delay_s=3.0)
    server.routes["/410.jpg"] = FlakyRoute([410], JPEG)

    def reset(h) -> None:  # the connection dropped without an answer
        h.close_connection = True
        h.connection.shutdown(socket.SHUT_RDWR)

    server.routes["/reset.jpg"] = reset
    paths = ["/ok.jpg", "/page.jpg", "/big.jpg", "/slow.jpg", "/410.jpg", "/reset.jpg"]
    urls = [server.url(p) for p in paths] + ["http://10.0.0.1/x.jpg"]
    policy = _policy(server, total_timeout=1.0, read_timeout=1.0, max_bytes=4096)
    results = _process(server, tmp_path, urls, FetchRetry(retries=1, backoff=0.01), policy=policy)
    got = [(r.status, r.failure_class) for r in results]
    assert got == [
        ("done", None),
        ("failed", "invalid_image"),
        ("failed", "refused"),
        ("failed", "timeout"),
        ("failed", "permanent"),
        ("failed", "transient"),
        ("failed", "refused"),
    ], [(r.url, r.error) for r in results]
    assert len(slow.at) == 2  # a timeout is tried again
    assert {r.failure_class for r in results} - {None} <= set(FAILURE_CLASSES)
    assert classify_failure(RuntimeError("x")) == "internal"


def test_a_host_that_pushes_back_is_paused_for_its_other_urls(server, tmp_path) -> None:
    """Two downloads at a time: A gets 429 + Retry-After: 1 while B is under way; C, next in line for
    the same host, does not start before A's pause is over (without the pause it starts with B's end)."""
    a = FlakyRoute([(429, {"Retry-After": "1"})], JPEG)
    b = FlakyRoute([], JPEG, delay_s=0.2)
    c = FlakyRoute([], JPEG)
    server.routes.update({"/a.jpg": a, "/b.jpg": b, "/c.jpg": c})
    urls = [server.url(p) for p in ("/a.jpg", "/b.jpg", "/c.jpg")]
    results = _process(server, tmp_path, urls, FetchRetry(retries=2), concurrency=2, per_host=2)
    assert [r.status for r in results] == ["done"] * 3
    assert c.at[0] - a.at[0] >= 1.0, (a.at, b.at, c.at)


def test_redis_pause_holds_in_every_process(redis_url) -> None:
    """A pause set through one limiter is waited out by another on the same Redis (another run)."""
    host = f"pause-{time.monotonic_ns()}.example"

    async def go() -> float:
        one, other = RedisHostLimiter(redis_url, 2), RedisHostLimiter(redis_url, 2)
        try:
            await one.pause(host, 0.8)
            t0 = time.monotonic()
            async with other.hold(host):
                return time.monotonic() - t0
        finally:
            await one.aclose()
            await other.aclose()

    assert asyncio.run(go()) >= 0.5


def test_local_pause_is_waited_out() -> None:
    async def go() -> float:
        limiter = LocalHostLimiter(1)
        await limiter.pause("h", 0.5)
        await limiter.pause("h", 0.1)  # a shorter pause does not cut the longer one short
        t0 = time.monotonic()
        async with limiter.hold("h"):
            return time.monotonic() - t0

    assert asyncio.run(go()) >= 0.45


@pytest.mark.parametrize(
    "value,expected",
    [("1", 1.0), ("0", 0.0), (" 120 ", 120.0), ("soon", None), ("", None), (None, None), ("-5", None)],
)
def test_retry_after_values(value, expected) -> None:
    assert retry_after_seconds(value) == expected


def test_retry_after_date_in_the_past_is_zero() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now) == 0.0
    assert retry_after_seconds("Thu, 01 Jan 2026 00:00:30 GMT", now) == 30.0


def test_settings_make_the_retry_policy() -> None:
    s = Settings(_env_file=None, fetch_retries=5, fetch_retry_after_max=12, fetch_retry_backoff=0.2)
    assert FetchRetry.from_settings(s) == FetchRetry(5, 0.2, 10.0, 12.0)
    assert ProcessOptions.from_settings(s).fetch_retry.retries == 5
    assert FetchRetry.from_settings(Settings(_env_file=None)).retries == 3
