"""Gauges read from the app database when `/metrics` is scraped: the request queue and the webhook outbox.

Computed at scrape time rather than kept by the processes that change them: the database is the one
truth every API replica and run worker shares, and a gauge kept in a process would be lost with it.
Each scrape runs two grouped counts on indexed columns (`ix_requests_status_seq`,
`ix_webhook_deliveries_state_next`); a database that does not answer leaves the gauges out of that
scrape (and sets `imgpipe_db_up` to 0) instead of failing it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from image_pipeline.domain.clock import as_utc, utcnow
from image_pipeline.domain.db.models import DELIVERY_PENDING, ImageRequest, WebhookDelivery
from image_pipeline.domain.status import PENDING, PROCESSING

log = logging.getLogger(__name__)


class DatabaseGauges(Collector):
    """`imgpipe_requests_queued{status}` (pending, processing), `imgpipe_webhook_outbox_pending`,
    `imgpipe_webhook_outbox_due` and the age of the oldest pending delivery."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("imgpipe_db_up", "Whether the app database answered this scrape's gauges.")
        try:
            families = list(self._families())
        except Exception as exc:
            log.warning("metrics: database gauges unavailable: %s", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _families(self) -> Iterator[GaugeMetricFamily]:
        now = utcnow()
        with self.sessions() as s:
            counts = dict(
                s.execute(
                    select(ImageRequest.status, func.count())
                    .where(ImageRequest.status.in_((PENDING, PROCESSING)))
                    .group_by(ImageRequest.status)
                ).all()
            )
            pending, due, oldest = s.execute(
                select(
                    func.count(),
                    func.count().filter(WebhookDelivery.next_attempt_at <= now),
                    func.min(WebhookDelivery.created_at),
                ).where(WebhookDelivery.state == DELIVERY_PENDING)
            ).one()
        queued = GaugeMetricFamily(
            "imgpipe_requests_queued", "Requests not finished yet, by status (the queue depth).", labels=["status"]
        )
        for status in (PENDING, PROCESSING):
            queued.add_metric([status], counts.get(status, 0))
        yield queued
        yield GaugeMetricFamily("imgpipe_webhook_outbox_pending", "Webhook deliveries still owed.", value=pending)
        yield GaugeMetricFamily(
            "imgpipe_webhook_outbox_due", "Pending webhook deliveries whose next attempt is due now.", value=due
        )
        age = (now - as_utc(oldest)).total_seconds() if oldest is not None else 0.0
        yield GaugeMetricFamily(
            "imgpipe_webhook_outbox_oldest_seconds", "Age of the oldest pending webhook delivery.", value=age
        )
