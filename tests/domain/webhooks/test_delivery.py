"""Webhook delivery against real receivers: the run's first attempt, then the retry sensor (evaluated as
the daemon would) on a 1,1,2 s schedule; the delivery log through the API; replays."""

from __future__ import annotations

import time

import dagster as dg
import pytest
from fastapi.testclient import TestClient
from standardwebhooks.webhooks import Webhook

from api.auth import owner_of
from api.main import create_app
from image_pipeline.defs.sensors import webhook_retry_sensor
from tests.support.inputs import csv_bytes, make_image
from tests.support.pipeline import run_partition
from tests.support.services import WEBHOOK_SECRET

AUTH = {"Authorization": "Bearer test-key-1"}
OWNER = owner_of("test-key-1")


@pytest.fixture
def settings(make_settings, bucket, image_server, webhook_receiver):
    return make_settings(
        s3_bucket=bucket,
        fetch_allow=f"{image_server.allow},{webhook_receiver.allow}",
        webhook_retry_schedule="1,1,2",
        webhook_timeout=2,
    )


@pytest.fixture
def api(settings):
    with TestClient(create_app(settings)) as c:
        yield c


def finished_request(submit, resources, instance, image_server, webhook_receiver) -> str:
    url = image_server.add("/w/a.jpg", make_image(seed=3))
    rid = submit(csv_bytes([("1", "Shoe", [url])]), webhook_url=webhook_receiver.url, owner=OWNER)
    assert run_partition(rid, resources, instance).success
    return rid


def drive_retries(api: TestClient, rid: str, resources, instance, timeout: float = 45.0) -> dict:
    """Tick the retry sensor (like the daemon does) until no delivery of the request is pending."""
    deadline = time.monotonic() + timeout
    while True:
        with dg.build_sensor_context(instance=instance, resources=resources) as ctx:
            webhook_retry_sensor(ctx)
        log = api.get(f"/api/requests/{rid}/webhooks", headers=AUTH).json()
        if log["deliveries"] and all(d["state"] != "pending" for d in log["deliveries"]):
            return log
        assert time.monotonic() < deadline, log
        time.sleep(0.3)


def test_500_500_200_is_three_signed_attempts_with_one_id(
    submit, resources, instance, image_server, webhook_receiver, api
) -> None:
    webhook_receiver.responses = [500, 500, 200]
    rid = finished_request(submit, resources, instance, image_server, webhook_receiver)
    first = api.get(f"/api/requests/{rid}/webhooks", headers=AUTH).json()["deliveries"]
    assert first[0]["state"] == "pending" and first[0]["attempt_count"] == 1 and first[0]["next_attempt_at"]

    log = drive_retries(api, rid, resources, instance)
    [d] = log["deliveries"]
    assert d["state"] == "delivered" and d["attempt_count"] == 3
    assert [a["status_code"] for a in d["attempts"]] == [500, 500, 200]
    assert [a["attempt"] for a in d["attempts"]] == [1, 2, 3]
    assert all(a["duration_ms"] >= 0 and a["at"] for a in d["attempts"])

    deliveries = webhook_receiver.wait_for(3)
    assert len(deliveries) == 3
    assert {x.headers["webhook-id"] for x in deliveries} == {d["event_id"]}
    assert len({x.body for x in deliveries}) == 1  # the very same event each time
    for x in deliveries:
        event = Webhook(WEBHOOK_SECRET).verify(x.body, x.headers)
        assert event["type"] == "request.completed" and event["request_id"] == rid
    # Retries wait (1 s +/- 20 %, then 1 s) rather than hammering the receiver.
    assert deliveries[1].at - deliveries[0].at >= 0.7 and deliveries[2].at - deliveries[1].at >= 0.7


def test_302_is_not_followed_and_not_retried(submit, resources, instance, image_server, webhook_receiver, api) -> None:
    webhook_receiver.responses = [302]
    rid = finished_request(submit, resources, instance, image_server, webhook_receiver)
    log = drive_retries(api, rid, resources, instance)
    [d] = log["deliveries"]
    assert d["state"] == "failed" and [a["status_code"] for a in d["attempts"]] == [302]
    time.sleep(1.5)
    assert len(webhook_receiver.deliveries) == 1  # a followed redirect would have POSTed to /elsewhere


def test_410_gone_stops_retrying(submit, resources, instance, image_server, webhook_receiver, api) -> None:
    webhook_receiver.responses = [410]
    rid = finished_request(submit, resources, instance, image_server, webhook_receiver)
    log = drive_retries(api, rid, resources, instance)
    [d] = log["deliveries"]
    assert d["state"] == "gone" and d["attempt_count"] == 1 and d["next_attempt_at"] is None
    time.sleep(1.5)
    with dg.build_sensor_context(instance=instance, resources=resources) as ctx:
        webhook_retry_sensor(ctx)
    assert len(webhook_receiver.deliveries) == 1


def test_hanging_receiver_times_out_and_is_retried(
    submit, resources, instance, image_server, webhook_receiver, api
) -> None:
    webhook_receiver.responses, webhook_receiver.hang_s = ["hang", 200], 10
    rid = finished_request(submit, resources, instance, image_server, webhook_receiver)
    log = drive_retries(api, rid, resources, instance)
    [d] = log["deliveries"]
    assert d["state"] == "delivered" and [a["status_code"] for a in d["attempts"]] == [None, 200]
    assert "timed out" in d["attempts"][0]["error"]
    assert 1500 <= d["attempts"][0]["duration_ms"] < 10_000  # cut at IMGPIPE_WEBHOOK_TIMEOUT (2 s), not 10 s


def test_429_and_5xx_retry_until_the_schedule_is_used_up(
    submit, resources, instance, image_server, webhook_receiver, api
) -> None:
    webhook_receiver.responses = [429, 503, 500, 502, 200]
    rid = finished_request(submit, resources, instance, image_server, webhook_receiver)
    log = drive_retries(api, rid, resources, instance)
    [d] = log["deliveries"]
    # 1 attempt + 3 retries (schedule 1,1,2), then it gives up: the fifth answer (200) is never asked for.
    assert d["state"] == "failed" and [a["status_code"] for a in d["attempts"]] == [429, 503, 500, 502]
    assert d["finished_at"] and d["next_attempt_at"] is None


def test_replay_resends_the_same_event(submit, resources, instance, image_server, webhook_receiver, api) -> None:
    rid = finished_request(submit, resources, instance, image_server, webhook_receiver)
    [original] = webhook_receiver.wait_for(1)

    r = api.post(f"/api/requests/{rid}/webhooks/replay", headers=AUTH)
    assert r.status_code == 202, r.text
    replay = r.json()
    assert replay["state"] == "pending" and replay["replay_of"] is not None
    log = drive_retries(api, rid, resources, instance)
    assert [d["state"] for d in log["deliveries"]] == ["delivered", "delivered"]
    [_, again] = webhook_receiver.wait_for(2)
    assert again.headers["webhook-id"] == original.headers["webhook-id"] and again.body == original.body
    Webhook(WEBHOOK_SECRET).verify(again.body, again.headers)

    # Other keys cannot see or replay it; unknown requests are 404 too.
    other = {"Authorization": "Bearer test-key-2"}
    assert api.get(f"/api/requests/{rid}/webhooks", headers=other).status_code == 404
    assert api.post(f"/api/requests/{rid}/webhooks/replay", headers=other).status_code == 404
    assert api.get("/api/requests/nope/webhooks", headers=AUTH).status_code == 404


def test_replay_of_an_unfinished_request_is_refused(submit, api, webhook_receiver) -> None:
    rid = submit(csv_bytes([("1", "A", ["https://x.example/a.jpg"])]), webhook_url=webhook_receiver.url, owner=OWNER)
    r = api.post(f"/api/requests/{rid}/webhooks/replay", headers=AUTH)
    assert r.status_code == 409 and "pending" in r.json()["detail"]
    assert api.get(f"/api/requests/{rid}/webhooks", headers=AUTH).json()["deliveries"] == []
