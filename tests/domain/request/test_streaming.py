"""Issue 9: the end of a request is streamed. The output CSV and the parsed rows are uploaded to S3 in
parts as they are produced (the suite's Swift, S3's real 5 MiB part rule) and are byte for byte what the
whole-document rendering gives; a failed upload leaves no parts; a large request's webhook lists no
products and says so, through the real assets and a real signed delivery."""

import json

import pytest
from standardwebhooks.webhooks import Webhook

from image_pipeline.defs.resources import build_resources
from image_pipeline.domain.catalog.csv_input import parse_csv
from image_pipeline.domain.catalog.csv_output import write_output_csv
from image_pipeline.domain.catalog.rows import open_rows
from image_pipeline.domain.keys import legacy_rows_key, output_csv_key, rows_key
from image_pipeline.domain.objects.local import LocalStore
from image_pipeline.domain.objects.s3 import S3_MIN_PART_SIZE, S3Store, make_s3_client
from image_pipeline.domain.request.chunks import compress_request
from image_pipeline.domain.request.finish import write_output
from image_pipeline.domain.request.validate import validate_request
from tests.support.inputs import csv_bytes, make_image
from tests.support.pipeline import rendered_output_csv, results_for, run_partition
from tests.support.services import WEBHOOK_SECRET

MiB = 1024 * 1024


def _etag_parts(client, bucket: str, key: str) -> int:
    """How many parts S3 assembled the object from (a multipart ETag ends in `-N`; a PutObject's has no dash)."""
    etag = client.head_object(Bucket=bucket, Key=key)["ETag"].strip('"')
    return int(etag.rsplit("-", 1)[1]) if "-" in etag else 1


def _expected_csv(csv: bytes, ctx, rid: str) -> bytes:
    """The output CSV as the whole-document rendering gives it, from the input and the recorded results."""
    with ctx.sessions() as s:
        results = {r.idx: r for r in results_for(s, rid)}

    def url_of(idx: int) -> str | None:
        r = results.get(idx)
        return ctx.store.public_url(r.output_key) if r and r.status == "done" and r.output_key else None

    return rendered_output_csv(parse_csv(csv).rows, url_of)


@pytest.fixture
def ctx_for(make_settings, bucket, image_server):
    """A pipeline context on the suite's S3 (Swift) with the smallest part size S3 allows."""

    def build(**overrides):
        settings = make_settings(s3_bucket=bucket, fetch_allow=image_server.allow, s3_part_size=S3_MIN_PART_SIZE)
        return build_resources(settings)["pipeline"].context()

    return build


def test_small_request_output_is_one_put_with_the_same_bytes(ctx_for, submit, image_server, bucket) -> None:
    ctx = ctx_for()
    good = [image_server.add(f"/s{i}.jpg", make_image(size=(64, 48), seed=i)) for i in range(3)]
    csv = csv_bytes([("1", "=Shoe", good[:2]), ("2", 'Hat, "red"', [good[2], image_server.url("/gone.jpg")])])
    rid = submit(csv)
    validate_request(ctx, rid)
    compress_request(ctx, rid)
    key, status = write_output(ctx, rid)
    assert status == "partially_failed"
    assert ctx.store.get(key) == _expected_csv(csv, ctx, rid)
    assert _etag_parts(ctx.store.client, bucket, key) == 1  # smaller than a part: a single PutObject
    assert list(open_rows(ctx.store, rid)) == parse_csv(csv).rows


def test_large_output_is_uploaded_in_parts_with_the_same_bytes(ctx_for, submit, image_server, bucket) -> None:
    """~12 MB of output (long product names keep the URL count, and the test, small): three 5 MiB parts."""
    ctx = ctx_for()
    images = [image_server.add(f"/l{i}.jpg", make_image(size=(32, 24), seed=i)) for i in range(3)]
    missing = image_server.url("/missing.jpg")
    rows = []
    for i in range(620):
        name = f'{"=" if i % 50 == 0 else ""}Product {i}, "quoted" ' + "x" * 19_000
        rows.append((str(i + 1), name, [missing if i % 7 == 0 else images[i % 3]]))
    csv = csv_bytes(rows)
    rid = submit(csv)
    validate_request(ctx, rid)
    compress_request(ctx, rid)
    key, status = write_output(ctx, rid)
    assert status == "partially_failed"
    expected = _expected_csv(csv, ctx, rid)
    assert len(expected) > 2 * S3_MIN_PART_SIZE
    assert ctx.store.get(key) == expected
    assert _etag_parts(ctx.store.client, bucket, key) == 3
    assert _etag_parts(ctx.store.client, bucket, rows_key(rid)) == 3  # the parsed rows are streamed too
    assert list(open_rows(ctx.store, rid)) == parse_csv(csv).rows


def test_failed_upload_is_aborted_and_leaves_no_parts(s3_endpoint, bucket) -> None:
    client = make_s3_client(s3_endpoint, "us-east-1")
    store = S3Store(client, bucket, "http://files", part_size=S3_MIN_PART_SIZE)
    with pytest.raises(RuntimeError, match="producer broke"), store.open_writer("requests/x/output.csv") as out:
        for _ in range(12):
            out.write(b"y" * MiB)  # two parts uploaded by now
        raise RuntimeError("producer broke")
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert not store.exists("requests/x/output.csv")


def test_s3_writer_sends_exactly_what_was_written(s3_endpoint, bucket) -> None:
    """Writes of any size, across part boundaries: the object is their concatenation."""
    client = make_s3_client(s3_endpoint, "us-east-1")
    store = S3Store(client, bucket, "http://files", part_size=S3_MIN_PART_SIZE)
    pieces = [bytes([i % 251]) * n for i, n in enumerate([1, 3 * MiB, 4 * MiB, 7, 5 * MiB - 8, 0, 123_457])]
    with store.open_writer("requests/x/blob", "text/csv") as out:
        for p in pieces:
            out.write(p)
    assert store.get("requests/x/blob") == b"".join(pieces)
    assert client.head_object(Bucket=bucket, Key="requests/x/blob")["ContentType"] == "text/csv"
    # parts close once 5 MiB are buffered: 3 MiB + 1 B, then 4 MiB (part 1); 7 B, 5 MiB - 8 B, then 120 KiB (part 2)
    assert _etag_parts(client, bucket, "requests/x/blob") == 2


def test_local_writer_is_incremental_and_atomic(tmp_path) -> None:
    store = LocalStore(tmp_path, "http://files")
    rows = [parse_csv(csv_bytes([(str(i), f"P{i}", [f"https://x.example/{i}.jpg"])])).rows[0] for i in range(5)]
    with store.open_writer(output_csv_key("r")) as out:
        write_output_csv(rows, lambda i: f"https://o/{i}.jpg" if i % 2 else None, out.write, flush_chars=10)
        assert not store.exists(output_csv_key("r"))  # not visible before it is complete
    assert store.get(output_csv_key("r")) == rendered_output_csv(
        rows, lambda i: f"https://o/{i}.jpg" if i % 2 else None
    )
    with pytest.raises(ValueError), store.open_writer(output_csv_key("r2")) as out:
        out.write(b"half")
        raise ValueError
    assert not store.exists(output_csv_key("r2"))
    assert [p.name for p in (tmp_path / "requests" / "r2").iterdir()] == []  # no temp file left


def test_rows_stored_before_json_lines_are_still_read(tmp_path) -> None:
    store = LocalStore(tmp_path, "http://files")
    rows = parse_csv(csv_bytes([("1", "A", ["https://x.example/a.jpg"]), ("2", "B", ["https://x.example/b.jpg"])])).rows
    store.put(legacy_rows_key("old"), json.dumps([r.as_dict() for r in rows]).encode())
    assert list(open_rows(store, "old")) == rows


@pytest.mark.parametrize(
    ("limits", "omitted"),
    [
        ({"webhook_max_products": 1}, True),  # 2 products > 1
        ({"webhook_max_urls": 2}, True),  # 3 URLs > 2
        ({"webhook_max_products": 2, "webhook_max_urls": 3}, False),  # at the limits: listed as before
    ],
)
def test_large_request_webhook_lists_no_products(
    limits,
    omitted: bool,
    make_settings,
    bucket,
    image_server,
    webhook_receiver,
    instance,
    submit,
    monkeypatch,
) -> None:
    """Through the real assets: the delivered, signed event says the products were omitted and points at
    the output CSV, which has them all."""
    settings = make_settings(s3_bucket=bucket, fetch_allow=f"{image_server.allow},{webhook_receiver.allow}", **limits)
    monkeypatch.setenv("IMGPIPE_WEBHOOK_SECRET", settings.webhook_secret)
    resources = build_resources(settings)
    urls = [image_server.add(f"/w{i}.jpg", make_image(size=(64, 48), seed=i)) for i in range(3)]
    rid = submit(csv_bytes([("1", "Shoe", urls[:2]), ("2", "Hat", urls[2:])]), webhook_url=webhook_receiver.url)
    assert run_partition(rid, resources, instance).success

    [delivery] = webhook_receiver.wait_for(1)
    event = Webhook(WEBHOOK_SECRET).verify(delivery.body, delivery.headers)
    data = event["data"]
    assert event["type"] == "request.completed" and data["counts"]["total"] == 3
    assert data["products_omitted"] is omitted and data["products_truncated"] is omitted
    assert data["products_total"] == 2
    assert data["output_csv_url"] == f"http://testserver/api/requests/{rid}/output.csv"
    if omitted:
        assert data["products"] is None
    else:
        assert [p["serial"] for p in data["products"]] == ["1", "2"]
        assert all(len(p["output_urls"]) == len(p["input_urls"]) for p in data["products"])
    store = resources["pipeline"].context().store
    out = store.get(output_csv_key(rid)).decode().splitlines()
    assert [line.split(",", 2)[1] for line in out[1:]] == ["Shoe", "Hat"]  # what the receiver reads instead
