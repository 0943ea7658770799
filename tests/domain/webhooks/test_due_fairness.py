"""Which due webhook deliveries the retry sensor takes per tick (real PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

from image_pipeline.domain.clock import utcnow
from image_pipeline.domain.db.engine import make_engine, session_factory
from image_pipeline.domain.db.models import DELIVERY_PENDING, WebhookDelivery
from image_pipeline.domain.webhooks.delivery import due_delivery_ids
from tests.support.inputs import csv_bytes


def test_a_receiver_with_a_backlog_cannot_fill_the_batch(settings, submit) -> None:
    """Issue 15, item 13. 30 deliveries to a tarpit receiver became due before one to a healthy
    receiver. Fails before the fix: the batch of 20 was the 20 earliest, all the tarpit's, so the
    healthy receiver waited behind it tick after tick. Now each receiver gets its turn."""
    rid = submit(csv_bytes([("1", "A", ["https://x.example/a.jpg"])]))
    engine = make_engine(settings.resolved_database_url)
    sessions = session_factory(engine)
    now = utcnow()
    far_past = now - timedelta(days=3650)  # earlier than anything other tests left due in this database
    with sessions() as s:

        def add(url: str, due_at) -> int:
            d = WebhookDelivery(
                request_id=rid,
                event_id=f"evt_{url[-8:]}_{due_at.timestamp()}",
                event_type="request.completed",
                url=url,
                payload="{}",
                state=DELIVERY_PENDING,
                next_attempt_at=due_at,
            )
            s.add(d)
            s.flush()
            return d.id

        tarpit = [add("https://tarpit.example/hook", far_past + timedelta(seconds=i)) for i in range(30)]
        healthy = add("https://healthy.example/hook", far_past + timedelta(seconds=60))
        s.commit()
        try:
            batch = due_delivery_ids(s, 20, now=far_past + timedelta(seconds=61))
            assert healthy in batch
            assert batch[:2] == [tarpit[0], healthy]  # round-robin: each receiver's earliest first
            assert [i for i in batch if i in tarpit] == tarpit[:19]  # within one receiver, earliest first
        finally:
            s.query(WebhookDelivery).filter(WebhookDelivery.request_id == rid).delete()
            s.commit()
    engine.dispose()
