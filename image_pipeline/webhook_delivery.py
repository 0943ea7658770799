"""Webhook delivery with retries that survive restarts: an outbox table, a retry schedule, an attempt log.

A final event becomes a `webhook_deliveries` row in the same transaction that marks it owed, so it is
never lost between "decided" and "sent". The run's notification step makes the first attempt at once;
later attempts are made by the `webhook_retry_sensor` (Dagster daemon), which sends whatever is due.
Nothing sleeps in memory: the schedule is `next_attempt_at` in the database.

Outcome of an attempt:
- 2xx: delivered.
- 410 Gone: the receiver asked us to stop -> `gone`, no more attempts.
- timeout, connection error, 408, 429, 5xx: retried after the next delay of the schedule
  (`IMGPIPE_WEBHOOK_RETRY_SCHEDULE`, each delay scaled by a random 1 +/- `IMGPIPE_WEBHOOK_RETRY_JITTER`),
  `failed` once the schedule is used up.
- anything else (3xx - redirects are never followed -, other 4xx, a URL the fetch policy refuses):
  `failed` at once; retrying the same request cannot change the answer.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from image_pipeline.fetch import FetchPolicy
from image_pipeline.rows import RowsMissing, open_rows
from image_pipeline.settings import parse_retry_schedule
from image_pipeline.storage import ObjectStore
from image_pipeline.store import requests as repo
from image_pipeline.store.models import (
    DELIVERY_DELIVERED,
    DELIVERY_FAILED,
    DELIVERY_GONE,
    DELIVERY_PENDING,
    FINAL_STATUSES,
    ImageRequest,
    WebhookAttempt,
    WebhookDelivery,
    utcnow,
)
from image_pipeline.webhooks import (
    Attempt,
    EventLimits,
    build_event,
    deliver,
    event_body,
    event_id_for,
    products_of,
)

RETRYABLE_STATUS = frozenset({408, 429})
LEASE_MARGIN_S = 30.0


@dataclass(frozen=True)
class RetryPolicy:
    """When to try again. `delays[i]` is the wait before retry i+1, so len(delays)+1 attempts at most."""

    delays: tuple[float, ...] = (5, 30, 120, 600, 1800) + (3600,) * 23
    jitter: float = 0.2
    timeout_s: float = 10.0  # one attempt, all included

    @classmethod
    def from_settings(cls, s) -> RetryPolicy:  # noqa: ANN001 (Settings)
        return cls(tuple(parse_retry_schedule(s.webhook_retry_schedule)), s.webhook_retry_jitter, s.webhook_timeout)

    @property
    def lease_s(self) -> float:
        """How long a claimed delivery is hidden from other senders: longer than any attempt can take."""
        return self.timeout_s + LEASE_MARGIN_S

    def next_delay(self, attempts_made: int, rng: random.Random) -> float | None:
        """The wait after the `attempts_made`-th failed attempt, or None when the schedule is used up."""
        if attempts_made - 1 >= len(self.delays):
            return None
        base = self.delays[attempts_made - 1]
        return max(0.0, base * (1 + rng.uniform(-self.jitter, self.jitter)))

    def fetch_policy(self, policy: FetchPolicy) -> FetchPolicy:
        """The download policy with the webhook's own time limit."""
        return replace(
            policy,
            total_timeout=self.timeout_s,
            connect_timeout=min(policy.connect_timeout, self.timeout_s),
            read_timeout=min(policy.read_timeout, self.timeout_s),
        )


def outcome_of(attempt: Attempt) -> str:
    """`delivered`, `gone`, `retry` or `failed` (no retry can help)."""
    if attempt.delivered:
        return DELIVERY_DELIVERED
    code = attempt.status_code
    if code is None:
        return DELIVERY_FAILED if attempt.refused else "retry"
    if code == 410:
        return DELIVERY_GONE
    if code >= 500 or code in RETRYABLE_STATUS:
        return "retry"
    return DELIVERY_FAILED


# --- building and queueing events -------------------------------------------------------------------


def final_event(
    session: Session, store: ObjectStore, req: ImageRequest, api_base_url: str, limits: EventLimits | None = None
) -> dict:
    """The request's final event, with per-product results when its parsed rows are still stored and the
    request is within `limits`; above them the event lists no products (nothing per product is read:
    the size of the event and of the memory that builds it does not grow with the request)."""
    limits = limits or EventLimits()
    if not limits.lists_products(req.row_count, req.url_count):
        return build_event(req, None, api_base_url, omitted=True)
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
    return build_event(req, products, api_base_url)


def _new_delivery(req: ImageRequest, event_id: str, event_type: str, payload: str, replay_of: int | None = None):  # noqa: ANN202
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
    session: Session, store: ObjectStore, request_id: str, api_base_url: str, limits: EventLimits | None = None
) -> int | None:
    """Mark the final event owed and queue its delivery in ONE transaction; the delivery id, or None.

    None when another caller already claimed the final event (the run and the failure sensor race for
    it) or the request has no webhook URL. The claim is a conditional UPDATE, so exactly one wins.
    """
    req = session.scalars(select(ImageRequest).where(ImageRequest.id == request_id)).first()
    if req is None or req.final_event_sent:
        return None
    event = final_event(session, store, req, api_base_url, limits)
    won = session.execute(
        update(ImageRequest)
        .where(ImageRequest.id == request_id, ImageRequest.final_event_sent.is_(False))
        .values(final_event_sent=True)
    ).rowcount
    if not won:
        session.rollback()
        return None
    delivery = None
    if req.webhook_url:
        delivery = _new_delivery(req, event_id_for(req.id, event["type"]), event["type"], event_body(event))
        session.add(delivery)
    session.commit()
    return delivery.id if delivery else None


class ReplayRefused(Exception):
    """A replay cannot be made (request not final, no webhook URL); the message is user-facing."""


def replay_final_event(
    session: Session, store: ObjectStore, req: ImageRequest, api_base_url: str, limits: EventLimits | None = None
) -> WebhookDelivery:
    """Send the final event again: same `webhook-id` and the same body as the original delivery.

    A delivery of it that is still pending is made due now instead of queueing a second copy.
    """
    if req.status not in FINAL_STATUSES:
        raise ReplayRefused(f"request is {req.status}; only a finished request has a final event")
    if not req.webhook_url:
        raise ReplayRefused("request has no webhook_url")
    event_type = f"request.{req.status}"
    previous = session.scalars(
        select(WebhookDelivery)
        .where(WebhookDelivery.request_id == req.id, WebhookDelivery.event_type == event_type)
        .order_by(WebhookDelivery.id.desc())
    ).first()
    now = utcnow()
    if previous is not None and previous.state == DELIVERY_PENDING:
        previous.next_attempt_at = min(_aware(previous.next_attempt_at) or now, now)
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


# --- sending ------------------------------------------------------------------------------------------


def _aware(dt: datetime | None) -> datetime | None:
    from datetime import UTC

    return dt.replace(tzinfo=UTC) if dt is not None and dt.tzinfo is None else dt  # SQLite hands back naive UTC


def due_delivery_ids(session: Session, limit: int, now: datetime | None = None) -> list[int]:
    now = now or utcnow()
    q = (
        select(WebhookDelivery.id)
        .where(WebhookDelivery.state == DELIVERY_PENDING, WebhookDelivery.next_attempt_at <= now)
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(limit)
    )
    return list(session.scalars(q).all())


def claim(session: Session, delivery_id: int, lease_s: float) -> WebhookDelivery | None:
    """Take a due delivery for one attempt by pushing its `next_attempt_at` past the attempt (a lease).

    A sender that dies mid-attempt leaves the row pending; it is due again when the lease runs out.
    """
    now = utcnow()
    won = session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.state == DELIVERY_PENDING,
            WebhookDelivery.next_attempt_at <= now,
        )
        .values(next_attempt_at=now + timedelta(seconds=lease_s), updated_at=now)
    ).rowcount
    session.commit()
    if not won:
        return None
    return session.get(WebhookDelivery, delivery_id)


def record_attempt(
    session: Session,
    delivery: WebhookDelivery,
    attempt: Attempt,
    started_at: datetime,
    policy: RetryPolicy,
    rng: random.Random,
) -> str:
    """Log the attempt and move the delivery on (delivered / gone / failed / next retry); its new state."""
    now = utcnow()
    delivery.attempts += 1
    session.add(
        WebhookAttempt(
            request_id=delivery.request_id,
            delivery_id=delivery.id,
            attempt_no=delivery.attempts,
            event_id=delivery.event_id,
            event_type=delivery.event_type,
            url=delivery.url,
            status_code=attempt.status_code,
            error=attempt.error,
            duration_ms=attempt.duration_ms,
            created_at=started_at,
        )
    )
    outcome = outcome_of(attempt)
    delay = policy.next_delay(delivery.attempts, rng) if outcome == "retry" else None
    if outcome == "retry" and delay is not None:
        delivery.state, delivery.next_attempt_at = DELIVERY_PENDING, now + timedelta(seconds=delay)
    else:
        if outcome == "retry":
            outcome = DELIVERY_FAILED  # the schedule is used up
        delivery.state, delivery.next_attempt_at, delivery.finished_at = outcome, None, now
    delivery.last_status_code, delivery.last_error, delivery.updated_at = attempt.status_code, attempt.error, now
    session.commit()
    return delivery.state


@dataclass
class SentAttempt:
    delivery_id: int
    attempt: Attempt
    state: str


def send_deliveries(
    sessions: sessionmaker[Session],
    delivery_ids: list[int],
    *,
    secret: str | None,
    fetch_policy: FetchPolicy,
    policy: RetryPolicy,
    rng: random.Random | None = None,
) -> list[SentAttempt]:
    """Claim each delivery, POST the claimed ones concurrently, record every attempt."""
    rng = rng or random.Random()
    web = policy.fetch_policy(fetch_policy)
    with sessions() as s:
        claimed = [d for d in (claim(s, i, policy.lease_s) for i in delivery_ids) if d is not None]
        if not claimed:
            return []
        started = utcnow()

        async def send_all() -> list[Attempt]:
            return await asyncio.gather(*(deliver(d.url, d.payload, d.event_id, secret, web) for d in claimed))

        attempts = asyncio.run(send_all())
        return [
            SentAttempt(d.id, a, record_attempt(s, d, a, started, policy, rng))
            for d, a in zip(claimed, attempts, strict=True)
        ]


def send_due(
    sessions: sessionmaker[Session], *, secret: str | None, fetch_policy: FetchPolicy, policy: RetryPolicy, limit: int
) -> list[SentAttempt]:
    """Send up to `limit` deliveries whose time has come (the retry sensor's tick)."""
    with sessions() as s:
        ids = due_delivery_ids(s, limit)
    return send_deliveries(sessions, ids, secret=secret, fetch_policy=fetch_policy, policy=policy) if ids else []


# --- reading the log ------------------------------------------------------------------------------------


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
                "at": _iso(a.created_at),
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
            "next_attempt_at": _iso(d.next_attempt_at) if d.state == DELIVERY_PENDING else None,
            "created_at": _iso(d.created_at),
            "finished_at": _iso(d.finished_at),
            "replay_of": d.replay_of,
            "attempts": by_delivery.get(d.id, []),
        }
        for d in deliveries
    ]


def _iso(dt: datetime | None) -> str | None:
    dt = _aware(dt)
    return dt.isoformat() if dt is not None else None
