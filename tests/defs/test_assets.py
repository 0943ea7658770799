"""Materialise one request partition against real S3 (Swift s3api), Postgres, Redis and a loopback image server."""

import csv
import io
import json

import dagster as dg
import pytest
from PIL import Image
from standardwebhooks.webhooks import Webhook

from image_pipeline.defs.assets import request_assets
from image_pipeline.domain.services import make_store
from tests.support.inputs import csv_bytes, make_image
from tests.support.pipeline import db_request, run_partition
from tests.support.services import WEBHOOK_SECRET


def test_request_end_to_end_in_process(
    settings,
    resources,
    instance,
    submit,
    image_server,
    webhook_receiver,
) -> None:
    sources = {
        f"/p/{i}.{ext}": make_image(fmt, (480, 360), seed=i)
        for i, (fmt, ext) in enumerate([("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp"), ("JPEG", "jpg")])
    }
    urls = [image_server.add(path, data, "image/x") for path, data in sources.items()]
    rid = submit(csv_bytes([("1", "Shoe", urls[:2]), ("2", "=Hat", urls[2:])]), webhook_url=webhook_receiver.url)

    result = run_partition(rid, resources, instance)
    assert result.success
    mats = {m.asset_key.to_user_string(): m for m in result.get_asset_materialization_events()}
    meta = mats["compressed_images"].materialization.metadata
    assert meta["done"].value == 4 and meta["failed"].value == 0
    assert meta["bytes_out"].value < meta["bytes_in"].value

    req, results = db_request(settings, rid)
    assert req.status == "completed" and (req.done_count, req.failed_count) == (4, 0)
    store = make_store(settings)
    for r, (path, original) in zip(results, sources.items(), strict=True):
        data = store.get(r.output_key)
        img = Image.open(io.BytesIO(data))
        assert img.format == "JPEG" and img.mode == "RGB" and len(data) < len(original)
        assert r.url.endswith(path)

    rows = list(csv.reader(io.StringIO(store.get(req.output_csv_key).decode())))
    assert rows[0] == ["S.No.", "Product Name", "Input Image Urls", "Output Image Urls"]
    assert rows[2][1] == "'=Hat"  # formula neutralised
    outs = [u for row in rows[1:] for u in row[3].split(", ")]
    assert outs == [store.public_url(r.output_key) for r in results]

    [delivery] = webhook_receiver.wait_for(1)
    payload = Webhook(WEBHOOK_SECRET).verify(delivery.body, delivery.headers)
    assert payload["type"] == "request.completed" and payload["request_id"] == rid
    assert payload["data"]["counts"]["done"] == 4
    assert [p["serial"] for p in payload["data"]["products"]] == ["1", "2"]


def test_one_bad_url_never_sinks_the_rest(
    settings,
    resources,
    instance,
    submit,
    image_server,
    webhook_receiver,
) -> None:
    good = image_server.add("/good.jpg", make_image())
    html = image_server.add("/page.jpg", b"<html><body>nope</body></html>", "text/html")
    missing = image_server.url("/missing.jpg")
    rid = submit(csv_bytes([("1", "A", [good, html]), ("2", "B", [missing])]), webhook_url=webhook_receiver.url)
    assert run_partition(rid, resources, instance).success

    req, results = db_request(settings, rid)
    assert req.status == "partially_failed" and (req.done_count, req.failed_count) == (1, 2)
    errors = {r.url: r.error for r in results}
    assert "HTML" in errors[html] and "404" in errors[missing] and errors[good] is None
    payload = json.loads(webhook_receiver.wait_for(1)[0].body)
    assert payload["type"] == "request.partially_failed"
    assert payload["data"]["products"][0]["output_urls"][1] is None


def test_rerun_skips_images_already_stored(settings, resources, instance, submit, image_server) -> None:
    urls = [image_server.add(f"/{i}.jpg", make_image(seed=i)) for i in range(3)]
    rid = submit(csv_bytes([("1", "A", urls)]))
    assert run_partition(rid, resources, instance).success
    hits = len(image_server.hits)
    result = dg.materialize(request_assets, partition_key=rid, resources=resources, instance=instance)
    assert result.success and len(image_server.hits) == hits  # nothing downloaded again
    meta = {m.asset_key.to_user_string(): m for m in result.get_asset_materialization_events()}
    assert meta["compressed_images"].materialization.metadata["skipped_already_stored"].value == 3


def test_missing_input_fails_the_request_and_tells_the_caller(
    settings,
    resources,
    instance,
    submit,
    webhook_receiver,
) -> None:
    from image_pipeline.domain.keys import input_key

    rid = submit(csv_bytes([("1", "A", ["https://x.example/a.jpg"])]), webhook_url=webhook_receiver.url)
    store = make_store(settings)
    store.client.delete_object(Bucket=settings.s3_bucket, Key=input_key(rid))
    result = run_partition(rid, resources, instance, raise_on_error=False)
    assert not result.success
    req, _ = db_request(settings, rid)
    assert req.status == "failed" and "missing" in req.error
    payload = json.loads(webhook_receiver.wait_for(1)[0].body)
    assert payload["type"] == "request.failed" and "missing" in payload["data"]["error"]


@pytest.mark.parametrize("n", [40])
def test_many_urls_keep_input_order(settings, resources, instance, submit, image_server, n: int) -> None:
    urls = [image_server.add(f"/o/{i}.png", make_image("PNG", (60 + i, 40), seed=i)) for i in range(n)]
    rows = [(str(i), f"P{i}", urls[i : i + 4]) for i in range(0, n, 4)]
    rid = submit(csv_bytes(rows))
    assert run_partition(rid, resources, instance).success
    _, results = db_request(settings, rid)
    assert [r.idx for r in results] == list(range(n))
    assert [r.width for r in results] == [60 + i for i in range(n)]  # each output is its own input
