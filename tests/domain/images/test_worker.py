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


# --- issue 15 ---------------------------------------------------------------------------------------


def test_malformed_and_international_hosts_are_per_url_errors_not_internal_ones(server, tmp_path) -> None:
    """Issue 15 item 2: fails before ("internal error: UnicodeError: label empty or too long", and
    "internal error: UnicodeEncodeError" for a Unicode host); passes: each URL says what is wrong."""
    urls = [
        "https://a..b.example.com/x.jpg",
        "https://" + "x" * 64 + ".example.com/x.jpg",
        "http://bücher.invalid/x.jpg",  # encoded, then not found: an ordinary DNS failure
    ]
    items = [WorkItem(i, 2, u) for i, u in enumerate(urls)]
    results = {r.idx: r for r in _run(items, LocalStore(tmp_path, "http://x"), FetchPolicy(), ProcessOptions())}
    for i in range(len(urls)):
        assert results[i].status == "failed" and "internal error" not in results[i].error, results[i].error
    assert "empty label" in results[0].error and "63" in results[1].error
    assert "xn--bcher-kva.invalid" in results[2].error


def test_storage_errors_never_carry_botocore_text(server, tmp_path) -> None:
    """Issue 15 item 8: fails before (the URL's error was botocore's own text: 'Could not connect to the
    endpoint URL: "http://127.0.0.1:PORT/bucket/..."', naming the internal object store)."""
    import boto3
    from botocore.config import Config

    from image_pipeline.domain.objects.s3 import S3Store
    from tests.support.servers import free_port

    server.add("/a.jpg", make_image("JPEG", (64, 48)))
    dead = free_port()
    client = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{dead}",
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(retries={"max_attempts": 1}, connect_timeout=1),
    )
    store = S3Store(client, "internal-bucket", "http://x")
    [result] = _run(
        [WorkItem(0, 2, server.url("/a.jpg"))], store, FetchPolicy(allow=parse_allow(server.allow)), ProcessOptions()
    )
    assert result.status == "failed" and result.error == "could not store the output image"


def test_the_per_host_limit_holds_for_every_redirect_hop(tmp_path) -> None:
    """Issue 15 item 8: fails before (the slot was taken for the first hop's host only: 8 names
    redirecting to one server gave it 8 x per_host downloads at once); passes: at most per_host."""
    from http.server import BaseHTTPRequestHandler

    from tests.support.servers import LoopbackServer, redirect_to, send_body

    body = make_image("JPEG", (64, 48))
    gauge = {"now": 0, "max": 0}
    lock = threading.Lock()

    def victim_route(h) -> None:
        with lock:
            gauge["now"] += 1
            gauge["max"] = max(gauge["max"], gauge["now"])
        try:
            import time

            time.sleep(0.3)
            send_body(h, body)
        finally:
            with lock:
                gauge["now"] -= 1

    victim = ImageServer(fallback=victim_route).start()
    target = victim.url("/v.jpg")

    class Redirector(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a) -> None:
            pass

        def do_GET(self) -> None:
            redirect_to(target)(self)

    redirectors = [LoopbackServer(Redirector, host=f"127.0.0.{k}") for k in range(2, 10)]
    try:
        allow = ",".join([victim.allow] + [r.allow for r in redirectors])
        items = [WorkItem(i, 2, f"{r.base}/{i}.jpg") for i, r in enumerate(redirectors * 2)]
        results = _run(
            items,
            LocalStore(tmp_path, "http://x"),
            FetchPolicy(allow=parse_allow(allow)),
            ProcessOptions(concurrency=16, per_host=2),
        )
        assert all(r.status == "done" for r in results), [r.error for r in results]
        assert gauge["max"] <= 2, gauge
    finally:
        for r in redirectors:
            r.close()
        victim.close()


def test_a_decode_past_its_time_limit_fails_its_url(server, tmp_path) -> None:
    """Issue 15 item 6: fails before (no limit: the URL waited for the codec however long it took)."""
    from image_pipeline.domain.images.codec import recompress

    recompress(make_image("JPEG", (8, 8)))  # the codec's imports are not the image's time
    big = io.BytesIO()
    Image.linear_gradient("L").resize((6000, 4000)).convert("RGB").save(big, "PNG")  # small file, 24 MP
    server.add("/big.png", big.getvalue())
    server.add("/ok.jpg", make_image("JPEG", (64, 48)))
    items = [WorkItem(0, 2, server.url("/big.png")), WorkItem(1, 2, server.url("/ok.jpg"))]
    opts = ProcessOptions(decode_timeout=0.2)
    results = {
        r.idx: r
        for r in _run(items, LocalStore(tmp_path, "http://x"), FetchPolicy(allow=parse_allow(server.allow)), opts)
    }
    assert results[0].status == "failed" and "longer than 0.2 s" in results[0].error
    assert results[1].status == "done"


def test_a_codec_process_that_dies_fails_no_other_url(server, tmp_path) -> None:
    """Issue 15 item 6: fails before (one dead codec process broke the pool: every URL in flight and
    every later one failed "internal error: BrokenProcessPool"); passes: the pool is renewed and the
    images it held are decoded again, each alone in a process of its own."""
    import multiprocessing
    import os
    import signal
    import time

    for i in range(6):  # small files, slow decodes (24 MP each)
        buf = io.BytesIO()
        Image.linear_gradient("L").resize((6000, 4000)).convert("RGB").rotate(i).save(buf, "PNG")
        server.add(f"/{i}.png", buf.getvalue())
    items = [WorkItem(i, 2, server.url(f"/{i}.png")) for i in range(6)]
    killed: list[int] = []

    def killer() -> None:  # SIGKILL one codec process once the images are being decoded
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            children = [c for c in multiprocessing.active_children() if c.name.startswith("SpawnProcess")]
            if len(server.hits) == len(items) and children:
                time.sleep(0.3)  # spawned workers import the codec first
                os.kill(children[0].pid, signal.SIGKILL)
                killed.append(children[0].pid)
                return
            time.sleep(0.02)

    threading.Thread(target=killer, daemon=True).start()
    opts = ProcessOptions(encode_pool="process", encode_workers=2, concurrency=6)
    results = _run(items, LocalStore(tmp_path, "http://x"), FetchPolicy(allow=parse_allow(server.allow)), opts)
    assert killed, "no codec process was killed"
    assert sorted(r.idx for r in results) == list(range(6))
    assert all(r.status == "done" for r in results), [r.error for r in results]
