"""Issue 15 item 9: one poison delivery must not stall the outbox.

Before the fix, any exception `deliver()` raised other than FetchError escaped `asyncio.gather` before
any attempt was recorded: the whole batch stayed leased, was re-leased every 40 s forever, unlogged, and
every retry due beside it was caught too. Each delivery is now isolated and always recorded.
"""

from __future__ import annotations

import time

import dagster as dg
import pytest
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook

from image_pipeline.defs.sensors import webhook_retry_sensor
from image_pipeline.domain.db.engine import make_engine, session_factory
from image_pipeline.domain.db.models import WebhookDelivery
from image_pipeline.domain.services import make_store
from image_pipeline.domain.webhooks import events
from image_pipeline.domain.webhooks.outbox import enqueue_final_event
from tests.support.inputs import csv_bytes, make_image
from tests.support.pipeline import run_partition
from tests.support.services import WEBHOOK_SECRET

POISON_URL = "https://poison.example.com/hook"


@pytest.fixture
def settings(make_settings, bucket, image_server, webhook_receiver):
    return make_settings(
        s3_bucket=bucket,
        fetch_allow=f"{image_server.allow},{webhook_receiver.allow}",
        webhook_retry_schedule="1,1,2",
        webhook_timeout=2,
    )


def _unexpected(monkeypatch) -> None:
    """Any exception at all from the send path of one URL (a bug, a library raising something new)."""
    real = events.fetch

    async def fetch(client, url, *a, **kw):
        if url == POISON_URL:
            raise RuntimeError("something nobody foresaw")
        return await real(client, url, *a, **kw)

    monkeypatch.setattr(events, "fetch", fetch)


@pytest.mark.parametrize(
    ("poison", "state_after"),
    [
        # A host name whose IDNA encoding failed (UnicodeError, not FetchError: the sample from the review).
        # Hosts are now encoded by the fetch policy, so this one is a clean refusal: failed, not retried.
        pytest.param(lambda mp: "https://a..b.example.com/h", "failed", id="malformed-host"),
        # The class: whatever the exception, it costs that delivery one attempt and nothing else.
        pytest.param(lambda mp: _unexpected(mp) or POISON_URL, "pending", id="any-exception"),
    ],
)
def test_a_poison_delivery_is_recorded_and_does_not_hold_up_the_batch(
    poison, state_after, monkeypatch, settings, submit, resources, instance, image_server, webhook_receiver
) -> None:
    """Fails before the fix (the sensor tick raised the poison's exception, the healthy retry due in the
    same batch was never sent and no attempt of either was recorded); passes after."""
    poison_url = poison(monkeypatch)
    # A healthy request whose first attempt gets a 500: its retry is due about 1 s later.
    webhook_receiver.responses = [500]
    url = image_server.add("/p/a.jpg", make_image(seed=5))
    healthy = submit(csv_bytes([("1", "Shoe", [url])]), webhook_url=webhook_receiver.url)
    assert run_partition(healthy, resources, instance).success
    # A poison delivery due now, in the same outbox (queued the way the run queues its final event).
    bad = submit(csv_bytes([("1", "Hat", [url])]), webhook_url=poison_url)
    engine = make_engine(settings.resolved_database_url)
    sessions = session_factory(engine)
    with sessions() as s:
        assert enqueue_final_event(s, make_store(settings), bad, settings.resolved_api_base_url) is not None

    deadline = time.monotonic() + 30
    while True:
        with dg.build_sensor_context(instance=instance, resources=resources) as ctx:
            webhook_retry_sensor(ctx)
        with sessions() as s:
            rows = {d.request_id: d for d in s.scalars(select(WebhookDelivery)).all() if d.request_id in (healthy, bad)}
            s.expunge_all()
        if rows[healthy].state == "delivered" and rows[bad].attempts >= 1:
            break
        assert time.monotonic() < deadline, {k: (v.state, v.attempts, v.last_error) for k, v in rows.items()}
        time.sleep(0.3)
    engine.dispose()

    assert rows[healthy].attempts == 2
    poisoned = rows[bad]
    assert poisoned.state == state_after  # pending = retried on the schedule; failed = refused for good
    assert (poisoned.next_attempt_at is not None) == (state_after == "pending")
    assert poisoned.last_status_code is None and poisoned.last_error
    delivered = webhook_receiver.wait_for(2)
    assert Webhook(WEBHOOK_SECRET).verify(delivered[-1].body, delivered[-1].headers)["request_id"] == healthy
