"""Fault tests with real processes: the run worker SIGKILLed mid-request, PostgreSQL restarted mid-request,
Redis flushed and killed, the API killed after accepting work, an input object vanishing, and the daemon
killed between webhook retries. Each asserts nothing is lost: every image stored once, the right final
status, exactly one final webhook (valid signature)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from urllib.parse import urlsplit

import dagster as dg
import pytest
import redis
from standardwebhooks.webhooks import Webhook

from image_pipeline.domain.keys import input_key
from image_pipeline.domain.objects.s3 import make_s3_client
from image_pipeline.domain.status import status_document
from tests.support.fault_checks import (
    FINAL,
    dagster_runs,
    db_rows,
    final_webhooks,
    one_request_csv,
    started_worker,
    stored_images,
)
from tests.support.fault_stack import Stack, fault_stack, slow_images, wait_until
from tests.support.inputs import make_image
from tests.support.services import WEBHOOK_SECRET, create_pg_database, drop_pg_database
from tests.support.throwaway import ThrowawayPostgres, ThrowawayRedis


@pytest.fixture
def stack_factory(tmp_path, s3_endpoint, bucket, image_server, webhook_receiver):
    with ExitStack() as stacks:

        def make(database_url: str, redis_url: str, warm_launcher: bool = False, **env: str) -> Stack:
            return stacks.enter_context(
                fault_stack(
                    tmp_path,
                    database_url=database_url,
                    redis_url=redis_url,
                    bucket=bucket,
                    s3_endpoint=s3_endpoint,
                    allow=f"{image_server.allow},{webhook_receiver.allow}",
                    warm_launcher=warm_launcher,
                    **env,
                )
            )

        yield make


@pytest.fixture
def app_db() -> Iterator[str]:
    """A fresh app database on the shared PostgreSQL (the fault is elsewhere)."""
    url = create_pg_database("imgpipe_fault_app")
    yield url
    drop_pg_database(url)


@pytest.mark.parametrize("launcher", ["default", "warm_fork"])
def test_sigkill_of_the_run_worker_mid_request(
    launcher, stack_factory, app_db, image_server, webhook_receiver, s3_endpoint, bucket, redis_url
) -> None:
    """Dagster's default launcher (a process per run, compose) and the warm-fork launcher (`make up`)."""
    stack = stack_factory(app_db, redis_url, warm_launcher=launcher == "warm_fork")
    stack.start_api()
    stack.start_daemon()
    urls = slow_images(image_server, 12, 1.5)  # 2 at a time: about 9 s of downloading
    rid = stack.upload(one_request_csv(urls), webhook_receiver.url)

    _, pid = started_worker(stack, rid)
    stack.wait_status(rid, lambda s: s["progress"]["done"] >= 2)
    os.kill(pid, signal.SIGKILL)  # mid-download: about half the images are still to come
    _, recorded = db_rows(app_db, rid)
    done_before = {r.url for r in recorded if r.status == "done"}
    assert len(done_before) < 12, "the run finished before it could be killed"

    final = stack.wait_status(rid, lambda s: s["status"] in FINAL, 300)
    assert final["status"] == "completed" and final["progress"] == {"total": 12, "done": 12, "failed": 0}
    final_webhooks(webhook_receiver, rid, settle_s=0)
    wait_until(lambda: all(r.is_finished for r in dagster_runs(stack, rid)), 60, "runs not finished")
    runs = dagster_runs(stack, rid)
    assert [r.status for r in runs] == [dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.SUCCESS], stack.tail()
    assert runs[1].tags.get("dagster/retry_number") == "1"

    # Every image stored exactly once; the images recorded before the kill were not fetched again.
    assert len(stored_images(s3_endpoint, bucket, rid)) == 12
    assert done_before
    for url in done_before:
        assert image_server.hits.count(urlsplit(url).path) == 1, url
    [hook] = final_webhooks(webhook_receiver, rid)
    event = Webhook(WEBHOOK_SECRET).verify(hook.body, hook.headers)
    assert event["type"] == "request.completed" and event["data"]["counts"]["done"] == 12


def test_postgres_restart_mid_request(
    stack_factory, image_server, webhook_receiver, s3_endpoint, bucket, redis_url
) -> None:
    pg = ThrowawayPostgres().start()
    try:
        stack = stack_factory(pg.url, redis_url)
        stack.start_api()
        stack.start_daemon()
        urls = slow_images(image_server, 10, 0.8, prefix="/pg")
        rid = stack.upload(one_request_csv(urls), webhook_receiver.url)
        stack.wait_status(rid, lambda s: s["progress"]["done"] >= 2)

        pg.stop("fast")  # every connection of the API and the run worker is cut
        time.sleep(3)
        pg.start()

        final = stack.wait_status(rid, lambda s: s["status"] in FINAL, 300)
        assert final["status"] == "completed" and final["progress"] == {"total": 10, "done": 10, "failed": 0}
        assert len(stored_images(s3_endpoint, bucket, rid)) == 10
        req, results = db_rows(pg.url, rid)
        assert req.done_count == 10 and sorted(r.idx for r in results) == list(range(10))
        [hook] = final_webhooks(webhook_receiver, rid)
        assert Webhook(WEBHOOK_SECRET).verify(hook.body, hook.headers)["type"] == "request.completed"
    finally:
        pg.destroy()


def test_redis_flushed_and_down_api_killed_and_input_vanished(
    stack_factory, app_db, image_server, webhook_receiver, s3_endpoint, bucket
) -> None:
    cache = ThrowawayRedis().start()
    try:
        stack = stack_factory(app_db, cache.url)
        # Accept two requests with no daemon running, then kill the API hard.
        stack.start_api()
        urls = slow_images(image_server, 8, 0.8, prefix="/rd")
        rid = stack.upload(one_request_csv(urls), webhook_receiver.url)
        lost_input = stack.upload(one_request_csv(urls[:2]), webhook_receiver.url)
        stack.kill_api()
        # The input of the second request vanishes before it is processed.
        make_s3_client(s3_endpoint, "us-east-1").delete_object(Bucket=bucket, Key=input_key(lost_input))

        stack.start_api()
        assert stack.status(rid)["status"] == "pending"  # accepted work survived the API's death
        stack.start_daemon()
        stack.wait_status(rid, lambda s: s["progress"]["done"] >= 1)

        client = redis.Redis.from_url(cache.url)
        client.flushall()
        client.close()
        flushed = stack.status(rid)  # answered from the database
        req, _ = db_rows(app_db, rid)
        assert flushed["status"] == "processing" and flushed["progress"]["total"] == 8
        assert flushed["progress"]["done"] <= req.done_count

        cache.kill()
        down = stack.status(rid)
        assert down["status"] in ("processing", "completed") and down["progress"]["total"] == 8

        final = stack.wait_status(rid, lambda s: s["status"] in FINAL, 300)
        assert final["status"] == "completed" and final["progress"] == {"total": 8, "done": 8, "failed": 0}
        req, _ = db_rows(app_db, rid)
        doc = status_document(req, stack.env.get("IMGPIPE_API_BASE_URL") or stack.api)
        for k in ("request_id", "status", "progress", "output_csv_url", "error"):
            assert doc[k] == final[k], k
        for k in ("created_at", "updated_at"):
            assert datetime.fromisoformat(doc[k]) == datetime.fromisoformat(final[k].replace("Z", "+00:00")), k
        assert len(stored_images(s3_endpoint, bucket, rid)) == 8

        failed = stack.wait_status(lost_input, lambda s: s["status"] in FINAL, 120)
        assert failed["status"] == "failed" and "missing" in failed["error"]
        for request_id, event_type in ((rid, "request.completed"), (lost_input, "request.failed")):
            [hook] = final_webhooks(webhook_receiver, request_id, settle_s=1)
            event = Webhook(WEBHOOK_SECRET).verify(hook.body, hook.headers)
            assert event["type"] == event_type
        assert "missing" in event["data"]["error"]
    finally:
        cache.kill()


def test_webhook_retries_survive_a_daemon_restart(
    stack_factory, app_db, image_server, webhook_receiver, redis_url
) -> None:
    webhook_receiver.responses = [500, 500, 200]
    # The first retry is due ~8 s after the first attempt: time to kill the daemon before it is sent.
    stack = stack_factory(app_db, redis_url, IMGPIPE_WEBHOOK_RETRY_SCHEDULE="8,1")
    stack.start_api()
    stack.start_daemon()
    url = image_server.add("/wh/a.jpg", make_image(seed=5))
    rid = stack.upload(one_request_csv([url]), webhook_receiver.url)
    webhook_receiver.wait_for(1, timeout=180)
    wait_until(lambda: [d["attempt_count"] for d in stack.webhooks(rid)["deliveries"]] == [1], 60, "attempt not logged")
    stack.kill_daemon()  # the first attempt failed (500); nothing that sends webhooks is running now

    [d] = stack.webhooks(rid)["deliveries"]
    assert d["state"] == "pending" and d["attempt_count"] == 1 and d["next_attempt_at"]
    due = datetime.fromisoformat(d["next_attempt_at"].replace("Z", "+00:00"))
    time.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()) + 2)  # past due: nobody sends it now
    assert len(webhook_receiver.deliveries) == 1

    stack.start_daemon()  # a new daemon finds the schedule in the database
    wait_until(
        lambda: stack.webhooks(rid)["deliveries"][0]["state"] != "pending",
        120,
        lambda: stack.webhooks(rid),
        stack.tail,
    )
    [d] = stack.webhooks(rid)["deliveries"]
    assert d["state"] == "delivered" and [a["status_code"] for a in d["attempts"]] == [500, 500, 200]
    deliveries = final_webhooks(webhook_receiver, rid, settle_s=2)
    assert len(deliveries) == 3 and {x.headers["webhook-id"] for x in deliveries} == {d["event_id"]}
    for x in deliveries:
        assert Webhook(WEBHOOK_SECRET).verify(x.body, x.headers)["type"] == "request.completed"
