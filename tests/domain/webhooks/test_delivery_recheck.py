"""Webhook URLs are checked again at delivery: what the API accepted is not trusted later."""

import pytest
from sqlalchemy import select

from image_pipeline.domain.db.engine import make_engine, session_factory
from image_pipeline.domain.db.models import WebhookAttempt
from tests.support.inputs import csv_bytes, make_image
from tests.support.pipeline import db_request, run_partition


@pytest.fixture
def settings(make_settings, bucket, image_server):
    # The webhook receiver is NOT in the allow list at delivery time (say the operator removed it).
    return make_settings(s3_bucket=bucket, fetch_allow=image_server.allow)


def test_delivery_recheck_refuses_a_webhook_the_rules_no_longer_allow(
    settings,
    resources,
    instance,
    submit,
    image_server,
    webhook_receiver,
) -> None:
    rid = submit(csv_bytes([("1", "A", [image_server.add("/a.jpg", make_image())])]), webhook_url=webhook_receiver.url)
    assert run_partition(rid, resources, instance).success
    req, _ = db_request(settings, rid)
    assert req.status == "completed"
    engine = make_engine(settings.resolved_database_url)
    with session_factory(engine)() as s:
        attempts = s.scalars(select(WebhookAttempt).where(WebhookAttempt.request_id == rid)).all()
    engine.dispose()
    assert attempts and all(a.status_code is None and "refused" in a.error for a in attempts)
    assert webhook_receiver.deliveries == []  # never contacted
