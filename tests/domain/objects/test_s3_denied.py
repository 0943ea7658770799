"""Issue 15 item 13: an S3 store whose credentials lack `s3:ListBucket` (AWS then answers 403, not 404,
for a missing key) and transient S3 errors on PUT. Spoken to through the real S3 protocol: boto3 →
a loopback proxy with AWS's behaviour (tests/support/s3_proxy.py) → the suite's Swift."""

from __future__ import annotations

import boto3
import pytest
from botocore.config import Config

from image_pipeline.domain.objects import ObjectNotFound
from image_pipeline.domain.objects.s3 import S3Store, make_s3_client
from tests.support.s3_proxy import S3Proxy


@pytest.fixture
def denying(s3_endpoint: str):
    proxy = S3Proxy(s3_endpoint, deny_missing=True).start()
    yield proxy
    proxy.close()


def test_missing_keys_are_not_found_when_s3_answers_403(denying: S3Proxy, bucket: str) -> None:
    """Fails on main before the fix: `size`/`exists` raised ClientError 403 and `get`/`iter_chunks`
    raised AccessDenied (a crashed chunk step, a 500 on /files)."""
    store = S3Store(make_s3_client(denying.base, "us-east-1"), bucket, "http://x")
    store.put("requests/r/present.txt", b"here", "text/plain")
    assert store.get("requests/r/present.txt") == b"here"  # what exists is still read through
    assert store.size("requests/r/present.txt") == 4
    assert store.exists("requests/r/missing.txt") is False
    assert store.size("requests/r/missing.txt") is None
    with pytest.raises(ObjectNotFound):
        store.get("requests/r/missing.txt")
    with pytest.raises(ObjectNotFound):
        next(store.iter_chunks("requests/r/missing.txt"))
    assert denying.denied >= 4  # the proxy really answered 403 each time


def test_only_access_denied_is_taken_for_a_missing_key() -> None:
    """A 403 that is not AccessDenied (a bad signature, an unknown key id) stays an error: treating it
    as "not found" would hide a misconfigured store."""
    from botocore.exceptions import ClientError

    from image_pipeline.domain.objects.s3 import is_missing

    def error(code: str) -> ClientError:
        return ClientError({"Error": {"Code": code, "Message": "x"}}, "GetObject")

    assert all(is_missing(error(c)) for c in ("NoSuchKey", "404", "NotFound", "AccessDenied", "403"))
    assert not any(is_missing(error(c)) for c in ("SignatureDoesNotMatch", "InvalidAccessKeyId", "SlowDown"))


def test_a_request_completes_on_a_store_that_answers_403_for_missing_keys(
    make_settings, s3_endpoint, bucket, image_server, webhook_receiver, monkeypatch, instance
) -> None:
    """Fails on main before the fix: the chunk step asked whether its manifest existed, got a 403
    ClientError and the run failed."""
    from image_pipeline.defs.resources import build_resources
    from image_pipeline.domain.db.engine import make_engine, session_factory
    from tests.support.inputs import csv_bytes, make_image
    from tests.support.pipeline import db_request, run_partition, submit_to

    proxy = S3Proxy(s3_endpoint, deny_missing=True).start()
    try:
        settings = make_settings(
            s3_endpoint_url=proxy.base, s3_bucket=bucket, fetch_allow=f"{image_server.allow},{webhook_receiver.allow}"
        )
        monkeypatch.setenv("IMGPIPE_WEBHOOK_SECRET", settings.webhook_secret)
        urls = [image_server.add(f"/d{i}.jpg", make_image(size=(40, 30), seed=i)) for i in range(3)]
        engine = make_engine(settings.resolved_database_url)
        try:
            rid = submit_to(settings, session_factory(engine), csv_bytes([("1", "Shoe", urls)]))
        finally:
            engine.dispose()
        run_partition(rid, build_resources(settings), instance)
        req, results = db_request(settings, rid)
        assert req.status == "completed" and [r.status for r in results] == ["done"] * 3
        assert proxy.denied >= 1  # the pipeline really met the 403s
    finally:
        proxy.close()


def test_a_missing_file_is_a_404_when_s3_answers_403(make_settings, denying: S3Proxy, bucket: str) -> None:
    """Fails on main before the fix: /files answered 500 (the AccessDenied escaped)."""
    from fastapi.testclient import TestClient

    from api.main import create_app

    settings = make_settings(s3_endpoint_url=denying.base, s3_bucket=bucket)
    with TestClient(create_app(settings)) as client:
        r = client.get("/files/requests/3f6c0e9e-8d3a-4a53-9f1b-2b5c7a9e0d11/images/0000000.jpg")
    assert r.status_code == 404, r.text
    assert r.json()["detail"] == "not found"


def test_a_put_that_fails_transiently_is_retried_in_the_run(s3_endpoint: str, bucket: str, tmp_path) -> None:
    """Fails on main before the fix: one SlowDown that outlasted botocore's own retries failed the URL
    for good in that run ("could not store the output image"). Now the worker retries the store with
    backoff (IMGPIPE_STORE_PUT_ATTEMPTS)."""
    import asyncio

    from image_pipeline.domain.images.url_policy import FetchPolicy
    from image_pipeline.domain.images.worker import ProcessOptions, WorkItem, process_items
    from image_pipeline.domain.settings import parse_allow
    from tests.support.inputs import make_image
    from tests.support.servers import ImageServer

    proxy = S3Proxy(s3_endpoint).start()
    images = ImageServer().start()
    try:
        # One attempt per botocore call, so each failed PUT reaches the worker (botocore's own retries
        # would absorb a short blip; this is one that outlasts them).
        client = boto3.client(
            "s3",
            endpoint_url=proxy.base,
            region_name="us-east-1",
            config=Config(retries={"total_max_attempts": 1, "mode": "standard"}, s3={"addressing_style": "path"}),
        )
        store = S3Store(client, bucket, "http://x")
        url = images.add("/a.jpg", make_image(size=(40, 30)))
        proxy.fail_puts = 2
        out: list = []
        opts = ProcessOptions(store_put_attempts=3, store_put_backoff=0.05)
        asyncio.run(
            process_items(
                [WorkItem(0, 2, url)],
                request_id="r1",
                store=store,
                policy=FetchPolicy(allow=parse_allow(images.allow)),
                opts=opts,
                on_result=out.append,
            )
        )
        assert proxy.failed_puts == 2
        assert [r.status for r in out] == ["done"], [r.error for r in out]
        assert store.exists(out[0].output_key)

        proxy.fail_puts = 5  # more than the attempts: the URL fails, with our message, not botocore's
        out.clear()
        asyncio.run(
            process_items(
                [WorkItem(0, 2, url)],
                request_id="r2",
                store=store,
                policy=FetchPolicy(allow=parse_allow(images.allow)),
                opts=opts,
                on_result=out.append,
            )
        )
        assert [(r.status, r.error) for r in out] == [("failed", "could not store the output image")]
        assert proxy.failed_puts == 2 + 3  # each try reached the store
    finally:
        proxy.close()
        images.close()
