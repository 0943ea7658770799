"""Incremental sync with real processes: the same catalogue uploaded twice over HTTP to the API, run by
the daemon (PostgreSQL, S3 on Swift, Redis), from an origin that honours validators. The second request
downloads no body, keeps every output URL, and its webhook, output CSV and manifest say `unchanged`."""

from __future__ import annotations

import csv
import io

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from tests.support.inputs import csv_bytes, make_image
from tests.support.services import WEBHOOK_SECRET
from tests.support.stack import KEY, running_stack

AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def stack(tmp_path, redis_url, s3_endpoint, bucket, image_server, webhook_receiver):
    env = {
        "IMGPIPE_REDIS_URL": redis_url,
        "IMGPIPE_S3_BUCKET": bucket,
        "IMGPIPE_S3_ENDPOINT_URL": s3_endpoint,
        "IMGPIPE_FETCH_ALLOW": f"{image_server.allow},{webhook_receiver.allow}",
        "IMGPIPE_SYNC_MEMORY": "true",
    }
    with running_stack(tmp_path, env, webserver=True, warm_launcher=True) as s:
        yield s.api, s.logs


def upload_and_wait(api: str, logs, csv_data: bytes, receiver, n: int) -> tuple[str, dict]:
    r = httpx.post(
        f"{api}/api/upload",
        headers=AUTH,
        timeout=30,
        files={"file": ("catalogue.csv", csv_data)},
        data={"webhook_url": receiver.url},
    )
    assert r.status_code == 202, r.text
    try:
        delivery = receiver.wait_for(n, timeout=180)[n - 1]
    except AssertionError:
        pytest.fail("no webhook; daemon log tail:\n" + (logs / "daemon.log").read_text()[-4000:])
    event = Webhook(WEBHOOK_SECRET).verify(delivery.body, delivery.headers)
    assert event["request_id"] == r.json()["request_id"] and event["type"] == "request.completed"
    return event["request_id"], event


def test_the_same_catalogue_twice_through_api_and_daemon(stack, image_server, webhook_receiver) -> None:
    api, logs = stack
    image_server.validators = "honour"
    urls = [image_server.add(f"/sync/{i}.jpg", make_image("JPEG", (400, 300), seed=i)) for i in range(3)]
    catalogue = csv_bytes([("1", "Shoe", urls[:2]), ("2", "Bag", [urls[2], urls[0]])])  # URL 0 twice

    first, event1 = upload_and_wait(api, logs, catalogue, webhook_receiver, 1)
    assert event1["data"]["counts"]["sync"] == {"new": 4, "changed": 0, "unchanged": 0}
    assert image_server.bodies.count("/sync/0.jpg") == 1  # the same URL twice in one request: one fetch
    bodies = len(image_server.bodies)

    second, event2 = upload_and_wait(api, logs, catalogue, webhook_receiver, 2)
    assert len(image_server.bodies) == bodies  # every URL answered 304
    assert event2["data"]["counts"]["sync"] == {"new": 0, "changed": 0, "unchanged": 4}
    assert [p["sync_status"] for p in event2["data"]["products"]] == [["unchanged"] * 2] * 2
    kept = [p["output_urls"] for p in event1["data"]["products"]]
    assert [p["output_urls"] for p in event2["data"]["products"]] == kept  # the same output URLs

    table = list(csv.reader(io.StringIO(httpx.get(f"{api}/api/requests/{second}/output.csv", headers=AUTH).text)))
    assert table[0][-1] == "Sync Status" and [row[-1] for row in table[1:]] == ["unchanged, unchanged"] * 2
    manifest = httpx.get(f"{api}/api/requests/{second}/manifest.json", headers=AUTH).json()
    assert {u["sync_via"] for u in manifest["urls"]} == {"not_modified", "duplicate"}
    for url in {u for p in event2["data"]["products"] for u in p["output_urls"]}:
        assert "/files/outputs/" in url
        served = httpx.get(url)  # the content-addressed key is served like a request's own
        assert served.status_code == 200 and served.headers["content-type"] == "image/jpeg"
