"""The codec pool's time limit (issue 15 item 6), against a real loopback image server and a real store:
it measures the codec's own time, not the wait behind other images, and an image that overruns it
does not hold up the images behind it."""

from __future__ import annotations

import asyncio
import io

from PIL import Image

from image_pipeline.domain.images.codec_pool import CodecPool
from image_pipeline.domain.images.url_policy import FetchPolicy
from image_pipeline.domain.images.worker import ProcessOptions, WorkItem, process_items
from image_pipeline.domain.objects.local import LocalStore
from image_pipeline.domain.settings import parse_allow
from tests.support.inputs import make_image
from tests.support.servers import ImageServer, delayed_route


def _png(size: tuple[int, int], angle: int = 0) -> bytes:
    buf = io.BytesIO()  # a gradient: a small file, a decode whose time grows with its pixels
    Image.linear_gradient("L").resize(size).convert("RGB").rotate(angle).save(buf, "PNG")
    return buf.getvalue()


def _run(server: ImageServer, items: list[WorkItem], tmp_path, opts: ProcessOptions) -> dict:
    out: list = []
    policy = FetchPolicy(allow=parse_allow(server.allow))
    store = LocalStore(tmp_path, "http://x")
    asyncio.run(process_items(items, request_id="r1", store=store, policy=policy, opts=opts, on_result=out.append))
    return {r.idx: r for r in out}


def test_the_time_limit_counts_the_codec_not_the_queue(tmp_path) -> None:
    """Fails on main before the fix: the limit ran from the moment an image was queued, so with one codec
    worker the last of 30 ordinary images (each well within the limit) failed "took longer".

    The limit is set from this machine's own decode time, measured just before (8 images' worth), so
    the test says the same on a fast idle machine and a loaded one: queued behind 29 others, an image
    waits ~29 decodes, far past the limit; decoded, it takes one."""
    import statistics
    import time

    from image_pipeline.domain.images.codec import recompress

    server = ImageServer().start()
    try:
        bodies = [_png((1200, 900), i) for i in range(30)]
        recompress(bodies[0])  # the codec's imports are not the images' time
        took = []
        for body in bodies[:3]:
            start = time.perf_counter()
            recompress(body)
            took.append(time.perf_counter() - start)
        limit = 8 * statistics.median(took)
        items = [WorkItem(i, 2, server.add(f"/{i}.png", body, "image/png")) for i, body in enumerate(bodies)]
        opts = ProcessOptions(encode_workers=1, decode_timeout=limit, concurrency=30)
        results = _run(server, items, tmp_path, opts)
        assert [results[i].status for i in range(30)] == ["done"] * 30, [r.error for r in results.values()]
    finally:
        server.close()


def test_an_overrunning_image_does_not_hold_up_the_images_behind_it(tmp_path) -> None:
    """Fails on main before the fix: the thread still decoding the overrunning image kept the (one-worker)
    pool, and the images queued behind it failed "took longer" too."""
    server = ImageServer().start()
    try:
        from image_pipeline.domain.images.codec import recompress

        recompress(make_image("JPEG", (8, 8)))
        big = server.add("/big.png", _png((8000, 6000)), "image/png")  # 48 MP: about a second to decode
        items = [WorkItem(0, 2, big)]
        for i in range(1, 4):  # they arrive while the big one is being decoded
            server.routes[f"/ok{i}.jpg"] = delayed_route(make_image("JPEG", (64, 48), seed=i), 0.1)
            items.append(WorkItem(i, 2, server.url(f"/ok{i}.jpg")))
        results = _run(server, items, tmp_path, ProcessOptions(encode_workers=1, decode_timeout=0.3, concurrency=4))
        assert results[0].status == "failed" and "longer than 0.3 s" in results[0].error
        assert [results[i].status for i in range(1, 4)] == ["done"] * 3, [results[i].error for i in range(1, 4)]
    finally:
        server.close()


def test_threads_that_keep_overrunning_give_way_to_processes() -> None:
    """Each overrun sets a thread aside (it cannot be stopped); after as many as there are workers the
    pool moves to processes, where an overrunning worker is killed: the set-aside threads stay bounded."""
    with CodecPool(ProcessOptions(encode_workers=1, encode_pool="thread")) as pool:
        first = pool.executor
        pool.overran(first)
        assert not pool.processes and pool.executor is not first  # a fresh thread
        pool.overran(first)  # a late report about a pool already set aside changes nothing
        assert not pool.processes
        pool.overran(pool.executor)
        assert pool.processes and pool.slots is not None
