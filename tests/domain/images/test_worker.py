"""The concurrent path (`process_items`) against a real loopback image server and a real local store:
results map to their inputs whatever order they finish in, one URL's failure stays its own, slow
servers time out per URL, and cancelling a run leaves no task or worker behind."""

import asyncio
import io
import random
import threading

import pytest
from PIL import Image

from image_pipeline.domain.db.requests import UrlResult
from image_pipeline.domain.images.url_policy import FetchPolicy
from image_pipeline.domain.images.worker import ProcessOptions, WorkItem, process_items
from image_pipeline.domain.objects.local import LocalStore
from image_pipeline.domain.settings import parse_allow
from tests.support.inputs import make_image
from tests.support.servers import ImageServer, delayed_route


@pytest.fixture
def server():
    srv = ImageServer().start()
    yield srv
    srv.server.close()


def _run(items, store, policy, opts) -> list[UrlResult]:
    out: list[UrlResult] = []
    asyncio.run(process_items(items, request_id="r1", store=store, policy=policy, opts=opts, on_result=out.append))
    return out


@pytest.mark.parametrize("pool", ["thread", "process"])
def test_results_belong_to_their_input_whatever_order_they_finish(server, tmp_path, pool: str) -> None:
    rnd = random.Random(3)
    sizes = [(100 + 7 * i, 80 + 3 * i) for i in range(24)]
    items = []
    for i, size in enumerate(sizes):
        path = f"/o/{i}.jpg"
        server.routes[path] = delayed_route(make_image("JPEG", size, seed=i), rnd.uniform(0, 0.3))
        items.append(WorkItem(i, 2 + i // 3, server.url(path)))
    store = LocalStore(tmp_path, "http://x")
    policy = FetchPolicy(allow=parse_allow(server.allow))
    results = _run(items, store, policy, ProcessOptions(concurrency=8, per_host=8, encode_pool=pool))
    assert sorted(r.idx for r in results) == list(range(24))
    assert [r.idx for r in results] != list(range(24)) or pool == "process"  # finished out of order
    for r in results:
        assert r.status == "done" and r.url == items[r.idx].url and r.row == items[r.idx].row
        img = Image.open(io.BytesIO(store.get(r.output_key)))
        assert img.size == sizes[r.idx] == (r.width, r.height)


def test_one_failing_url_stays_its_own(server, tmp_path) -> None:
    good = make_image("JPEG", (64, 48))
    server.add("/ok.jpg", good)
    server.add("/page.jpg", b"<!doctype html><html></html>", "text/html")
    server.add("/broken.jpg", good[: len(good) // 3])
    server.routes["/slow.jpg"] = delayed_route(good, 8.0)

    def reset(h) -> None:
        h.connection.close()

    server.routes["/reset.jpg"] = reset
    paths = ["/ok.jpg", "/missing.jpg", "/page.jpg", "/ok.jpg", "/broken.jpg", "/slow.jpg", "/reset.jpg", "/ok.jpg"]
    items = [WorkItem(i, 2, server.url(p)) for i, p in enumerate(paths)]
    policy = FetchPolicy(allow=parse_allow(server.allow), total_timeout=4.0, read_timeout=4.0)
    results = {r.idx: r for r in _run(items, LocalStore(tmp_path, "http://x"), policy, ProcessOptions())}
    assert [results[i].status for i in range(len(paths))] == [
        "done", "failed", "failed", "done", "failed", "failed", "failed", "done"
    ], {i: r.error for i, r in results.items()}  # fmt: skip
    assert "404" in results[1].error
    assert "HTML" in results[2].error
    assert "truncated" in results[4].error or "corrupt" in results[4].error
    assert "time" in results[5].error.lower()


def test_cancelling_a_run_leaves_nothing_running(server, tmp_path) -> None:
    body = make_image("JPEG", (200, 150))
    for i in range(40):
        server.routes[f"/c/{i}.jpg"] = delayed_route(body, 0.5)
    items = [WorkItem(i, 2, server.url(f"/c/{i}.jpg")) for i in range(40)]
    seen: list[UrlResult] = []
    before = {t.name for t in threading.enumerate()}

    async def main() -> None:
        task = asyncio.create_task(
            process_items(
                iter(items),
                request_id="r1",
                store=LocalStore(tmp_path, "http://x"),
                policy=FetchPolicy(allow=parse_allow(server.allow)),
                opts=ProcessOptions(concurrency=4, per_host=4),
                on_result=seen.append,
            )
        )
        while len(seen) < 4:
            await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert {t for t in asyncio.all_tasks() if t is not asyncio.current_task()} == set()

    asyncio.run(main())
    assert 4 <= len(seen) < 40  # stopped early, and what finished was reported
    leftover = {t.name for t in threading.enumerate()} - before
    assert not [n for n in leftover if n.startswith(("codec", "store"))]
