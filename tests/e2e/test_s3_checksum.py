"""One request end to end against a store that refuses boto3's default checksums (the suite's Swift
through its refusing proxy: 501 NotImplemented on uploads carrying `x-amz-checksum-*` or an aws-chunked
trailer, docs/storage.md), with IMGPIPE_S3_CHECKSUM=when_required: upload -> run -> output CSV and
images in the bucket -> webhook. Every process that writes objects must follow the setting: the API
(the uploaded CSV), the run (images, parsed rows, output CSV) and, with the multiprocess executor, the
Dagster IO manager of the chunk steps; one that does not has its upload refused and the request fails.
Fails on main before the setting existed: the API's upload of the CSV was refused."""

from __future__ import annotations

import csv
import io

import httpx
import pytest
from PIL import Image
from standardwebhooks.webhooks import Webhook

from image_pipeline.domain.objects.s3 import make_s3_client
from tests.support.inputs import csv_bytes, make_image
from tests.support.services import WEBHOOK_SECRET
from tests.support.stack import KEY, running_stack


def test_a_request_through_a_store_that_refuses_default_checksums(
    tmp_path, redis_url, refusing_s3_endpoint, bucket, image_server, webhook_receiver
) -> None:
    env = {
        "IMGPIPE_REDIS_URL": redis_url,
        "IMGPIPE_S3_BUCKET": bucket,
        "IMGPIPE_S3_ENDPOINT_URL": refusing_s3_endpoint,
        "IMGPIPE_S3_CHECKSUM": "when_required",
        "IMGPIPE_FETCH_ALLOW": f"{image_server.allow},{webhook_receiver.allow}",
        "IMGPIPE_EXECUTOR": "multiprocess",  # chunk steps in processes of their own, joined by the S3 IO manager
        "IMGPIPE_CHUNK_SIZE": "2",
        "IMGPIPE_FANOUT_THRESHOLD": "2",
    }
    originals = {f"/strict/{i}.jpg": make_image("JPEG", (640, 480), seed=i) for i in range(4)}
    urls = [image_server.add(p, d) for p, d in originals.items()]
    with running_stack(tmp_path, env) as stack:
        auth = {"Authorization": f"Bearer {KEY}"}
        r = httpx.post(
            f"{stack.api}/api/upload",
            headers=auth,
            timeout=30,
            files={"file": ("p.csv", csv_bytes([("1", "Shoe", urls[:2]), ("2", "Bag", urls[2:])]))},
            data={"webhook_url": webhook_receiver.url},
        )
        assert r.status_code == 202, r.text + stack.log_tail("api")
        rid = r.json()["request_id"]
        try:
            [delivery] = webhook_receiver.wait_for(1, timeout=240)
        except AssertionError:
            pytest.fail("no webhook; daemon log tail:\n" + stack.log_tail("daemon"))
        event = Webhook(WEBHOOK_SECRET).verify(delivery.body, delivery.headers)
        assert event["request_id"] == rid and event["type"] == "request.completed", event

        out = httpx.get(f"{stack.api}/api/requests/{rid}/output.csv", headers=auth)
        assert out.status_code == 200
        rows = list(csv.reader(io.StringIO(out.text)))
        assert [row[0] for row in rows[1:]] == ["1", "2"]
        output_urls = [u for row in rows[1:] for u in row[3].split(", ")]

        s3 = make_s3_client(refusing_s3_endpoint, "us-east-1", checksum="when_required")
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"requests/{rid}/images/")["Contents"]
        keys = sorted(o["Key"] for o in listed)
        assert len(keys) == 4 and sorted(u.split("/files/", 1)[1] for u in output_urls) == keys
        for key in keys:
            data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            assert Image.open(io.BytesIO(data)).format == "JPEG"
            assert httpx.get(f"{stack.api}/files/{key}").content == data  # served by the API from the store
        # The chunk steps handed each other their outputs through the IO manager, in this bucket.
        assert s3.list_objects_v2(Bucket=bucket, Prefix="dagster-io/").get("KeyCount", 0) > 0
