"""Issue 15 item 12: re-runs are notified.

Before the fix every re-run (retry schedule, backfill, duplicate run) reset the request to `processing`
while `final_event_sent` stayed true: the new outcome was never sent, and a failed re-run turned
`partially_failed` into `failed` silently. Now a final request keeps its final status while it is
re-run, and each re-run's end sends one `request.updated` event (a new `webhook-id`) with the outcome.
"""

from __future__ import annotations

from standardwebhooks.webhooks import Webhook

from image_pipeline.domain.db.engine import make_engine, session_factory
from image_pipeline.domain.db.requests import get_request
from image_pipeline.domain.keys import input_key
from image_pipeline.domain.services import make_store
from tests.support.inputs import csv_bytes, make_image
from tests.support.pipeline import db_request, run_partition
from tests.support.servers import send_body, send_empty
from tests.support.services import WEBHOOK_SECRET


def test_each_rerun_of_a_final_request_sends_one_request_updated_event(
    settings, submit, resources, instance, image_server, webhook_receiver
) -> None:
    """Fails before the fix (no re-run sent any event: the caller never heard of the failed re-run nor of
    the completed one, and the re-run showed `processing` until its end); passes after."""
    good = image_server.add("/r/good.jpg", make_image(seed=1))
    flaky = image_server.url("/r/flaky.jpg")
    image_server.routes["/r/flaky.jpg"] = lambda h: send_empty(h, 404)
    rid = submit(csv_bytes([("1", "Shoe", [good, flaky])]), webhook_url=webhook_receiver.url)
    verify = Webhook(WEBHOOK_SECRET).verify

    # First run: one image fails -> partially_failed, its final event.
    assert run_partition(rid, resources, instance).success
    [first] = webhook_receiver.wait_for(1)
    assert verify(first.body, first.headers)["type"] == "request.partially_failed"

    # Re-run 1 fails at its first step (its stored input no longer parses): the request stays partially_failed
    # (its output CSV still stands) and the caller is told the re-run failed.
    store = make_store(settings)
    csv = store.get(input_key(rid))
    store.put(input_key(rid), b"not,a\nproduct,csv,at,all\n", "text/csv")
    assert not run_partition(rid, resources, instance, raise_on_error=False).success
    req, _ = db_request(settings, rid)
    assert req.status == "partially_failed" and req.output_csv_key
    [_, failed_rerun] = webhook_receiver.wait_for(2)
    event = verify(failed_rerun.body, failed_rerun.headers)
    assert event["type"] == "request.updated" and event["status"] == "partially_failed"
    assert "input CSV" in event["data"]["rerun_error"] and event["data"]["rerun"] == 1
    assert failed_rerun.headers["webhook-id"] != first.headers["webhook-id"]

    # Re-run 2 (what the retry schedule or a backfill launches) with the image now served: while it
    # runs, the request keeps its final status; at its end, one request.updated event, completed.
    store.put(input_key(rid), csv, "text/csv")
    engine = make_engine(settings.resolved_database_url)
    seen: list[str] = []

    def now_served(h) -> None:
        with session_factory(engine)() as s:
            seen.append(get_request(s, rid).status)
        send_body(h, make_image(seed=2))

    image_server.routes["/r/flaky.jpg"] = now_served
    assert run_partition(rid, resources, instance).success
    engine.dispose()
    assert seen == ["partially_failed"]  # not "processing" mid-re-run
    req, _ = db_request(settings, rid)
    assert req.status == "completed" and req.error is None
    deliveries = webhook_receiver.wait_for(3)
    assert len(deliveries) == 3
    event = verify(deliveries[2].body, deliveries[2].headers)
    assert event["type"] == "request.updated" and event["status"] == "completed"
    assert event["data"]["counts"]["done"] == 2 and event["data"]["rerun"] == 2 and event["data"]["rerun_error"] is None
    assert len({d.headers["webhook-id"] for d in deliveries}) == 3  # a new id per event
