"""The webhook outbox: a request's final event becomes a `webhook_deliveries` row in the same transaction
that marks it owed (so it is never lost between "decided" and "sent"); replays; the delivery log.

A request gets one final event (`request.<status>`) when its first run ends, then one `request.updated`
event (a new `webhook-id` each) at the end of every re-run (retry schedule, backfill, a duplicate run),
with the outcome the re-run left: the request keeps its final status while a re-run is under way.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from image_pipeline.domain.catalog.rows import RowsMissing, open_rows
from image_pipeline.domain.clock import as_utc, iso_utc, utcnow
from image_pipeline.domain.db import requests as repo
from image_pipeline.domain.db.models import DELIVERY_PENDING, ImageRequest, WebhookAttempt, WebhookDelivery
from image_pipeline.domain.objects import ObjectStore
from image_pipeline.domain.status import FINAL_STATUSES
from image_pipeline.domain.webhooks.events import (
    UPDATED_EVENT,
    EventLimits,
    build_event,
    event_body,
    event_id_for,
    event_type_for,
    products_of,
)


def final_event(
    session: Session,
    store: ObjectStore,
    req: ImageRequest,
    api_base_url: str,
    limits: EventLimits | None = None,
    event_type: str | None = None,
) -> dict:
    """The request's final event, with per-product results when its parsed rows are still stored and the
    request is within `limits`; above them the event lists no products (nothing per product is read:
    the size of the event and of the memory that builds it does not grow with the request)."""
    limits = limits or EventLimits()
    sync = repo.sync_counts(session, req.id)
    if not limits.lists_products(req.row_count, req.url_count):
        return build_event(req, None, api_base_url, omitted=True, event_type=event_type, sync=sync)
    products = None
    try:
        rows = open_rows(store, req.id)
    except RowsMissing:
        rows = None  # failed before parsing: nothing per product to report
    if rows is not None:
        outcomes = repo.OrderedOutcomes(session, req.id)  # streamed in index order: products_of asks in order
        try:
            products = products_of(rows, outcomes, store.public_url)
        finally:
            outcomes.close()
    return build_event(req, products, api_base_url, event_type=event_type, sync=sync)


def _new_delivery(req: ImageRequest, event_id: str, event_type: str, payload: str, replay_of: int | None = None):
    now = utcnow()
    return WebhookDelivery(
        request_id=req.id,
        event_id=event_id,
        event_type=event_type,
        url=req.webhook_url,
        payload=payload,
        state=DELIVERY_PENDING,
        attempts=0,
        next_attempt_at=now,
        replay_of=replay_of,
        created_at=now,
        updated_at=now,
    )


def enqueue_final_event(
    session: Session,
    store: ObjectStore,
    request_id: str,
    api_base_url: str,
    limits: EventLimits | None = None,
    rerun_error: str | None = None,
) -> int | None:
    """Mark the event owed and queue its delivery in ONE transaction; the delivery id, or None.

    The first time: the final event (`request.<status>`). After that, only while a re-run is open
    (`requests.open_rerun`): one `request.updated` event for that re-run, with its own `webhook-id`,
    the request's outcome now and `rerun_error` (why the re-run failed, when it did; the request then
    keeps the status it had). None when nothing is owed, another caller already claimed it (the run and
    the failure sensor race for it; the claim is a conditional UPDATE, so exactly one wins) or the
    request has no webhook URL.
    """
    req = session.scalars(select(ImageRequest).where(ImageRequest.id == request_id)).first()
    if req is None:
        return None
    claim = update(ImageRequest).where(ImageRequest.id == request_id)
    if not req.final_event_sent:
        event_type = event_type_for(req.status)
        event_id = event_id_for(req.id, event_type)
        claim = claim.where(ImageRequest.final_event_sent.is_(False)).values(final_event_sent=True, rerun_open=False)
    elif req.rerun_open:
        event_type = UPDATED_EVENT
        event_id = event_id_for(req.id, f"{UPDATED_EVENT}:{req.reruns}")
        claim = claim.where(ImageRequest.rerun_open.is_(True), ImageRequest.reruns == req.reruns).values(
            rerun_open=False
        )
    else:
        return None
    event = final_event(session, store, req, api_base_url, limits, event_type=event_type)
    if event_type == UPDATED_EVENT:
        event["data"].update(rerun=req.reruns, rerun_error=rerun_error)
    if not session.execute(claim).rowcount:
        session.rollback()
        return None
    delivery = None
    if req.webhook_url:
        delivery = _new_delivery(req, event_id, event_type, event_body(event))
        session.add(delivery)
    session.commit()
    return delivery.id if delivery else None


class ReplayRefused(Exception):
    """A replay cannot be made (request not final, no webhook URL); the message is user-facing."""


def replay_final_event(
    session: Session, store: ObjectStore, req: ImageRequest, api_base_url: str, limits: EventLimits | None = None
) -> WebhookDelivery:
    """Send the request's latest event again (its final event, or the `request.updated` of its last
    re-run): same `webhook-id` and the same body as the original delivery.

    A delivery of it that is still pending is made due now instead of queueing a second copy.
    """
    if req.status not in FINAL_STATUSES:
        raise ReplayRefused(f"request is {req.status}; only a finished request has a final event")
    if not req.webhook_url:
        raise ReplayRefused("request has no webhook_url")
    previous = session.scalars(
        select(WebhookDelivery)
        .where(WebhookDelivery.request_id == req.id, WebhookDelivery.replay_of.is_(None))
        .order_by(WebhookDelivery.id.desc())
    ).first()
    if previous is not None:  # the newest copy of that event (a replay of it, if any)
        previous = session.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.request_id == req.id, WebhookDelivery.event_id == previous.event_id)
            .order_by(WebhookDelivery.id.desc())
        ).first()
    event_type = previous.event_type if previous is not None else event_type_for(req.status)
    now = utcnow()
    if previous is not None and previous.state == DELIVERY_PENDING:
        previous.next_attempt_at = min(as_utc(previous.next_attempt_at) or now, now)
        previous.updated_at = now
        session.commit()
        return previous
    if previous is not None:
        payload, event_id = previous.payload, previous.event_id
    else:
        event = final_event(session, store, req, api_base_url, limits)
        payload, event_id = event_body(event), event_id_for(req.id, event_type)
    delivery = _new_delivery(req, event_id, event_type, payload, replay_of=previous.id if previous else None)
    session.add(delivery)
    session.commit()
    return delivery


def delivery_log(session: Session, request_id: str) -> list[dict]:
    """Every delivery of a request with its attempts, oldest first (the API's `/webhooks` document)."""
    deliveries = session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.request_id == request_id).order_by(WebhookDelivery.id)
    ).all()
    attempts = session.scalars(
        select(WebhookAttempt)
        .where(WebhookAttempt.request_id == request_id, WebhookAttempt.delivery_id.is_not(None))
        .order_by(WebhookAttempt.id)
    ).all()
    by_delivery: dict[int, list[dict]] = {}
    for a in attempts:
        by_delivery.setdefault(a.delivery_id, []).append(
            {
                "attempt": a.attempt_no,
                "at": iso_utc(a.created_at),
                "status_code": a.status_code,
                "error": a.error,
                "duration_ms": a.duration_ms,
            }
        )
    return [
        {
            "id": d.id,
            "event_id": d.event_id,
            "event_type": d.event_type,
            "url": d.url,
            "state": d.state,
            "attempt_count": d.attempts,
            "next_attempt_at": iso_utc(d.next_attempt_at) if d.state == DELIVERY_PENDING else None,
            "created_at": iso_utc(d.created_at),
            "finished_at": iso_utc(d.finished_at),
            "replay_of": d.replay_of,
            "attempts": by_delivery.get(d.id, []),
        }
        for d in deliveries
    ]
