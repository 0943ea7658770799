"""Sending webhook deliveries with retries that survive restarts: a retry schedule and an attempt log.

Deliveries are rows of the outbox (`outbox.py`). The run's notification step makes the first attempt at once;
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
import logging
import random
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from image_pipeline.domain.clock import utcnow
from image_pipeline.domain.db.models import (
    DELIVERY_DELIVERED,
    DELIVERY_FAILED,
    DELIVERY_GONE,
    DELIVERY_PENDING,
    ImageRequest,
    WebhookAttempt,
    WebhookDelivery,
)
from image_pipeline.domain.db.webhook_secrets import signing_secrets
from image_pipeline.domain.images.url_policy import FetchPolicy
from image_pipeline.domain.settings import parse_retry_schedule
from image_pipeline.domain.telemetry import tracing
from image_pipeline.domain.telemetry.metrics import record_webhook_attempt
from image_pipeline.domain.webhooks.events import Attempt, Secrets, deliver

if TYPE_CHECKING:
    from image_pipeline.domain.settings import Settings

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 429})
MAX_ERROR_CHARS = 500
LEASE_MARGIN_S = 30.0


@dataclass(frozen=True)
class RetryPolicy:
    """When to try again. `delays[i]` is the wait before retry i+1, so len(delays)+1 attempts at most."""

    delays: tuple[float, ...] = (5, 30, 120, 600, 1800) + (3600,) * 23
    jitter: float = 0.2
    timeout_s: float = 10.0  # one attempt, all included

    @classmethod
    def from_settings(cls, s: Settings) -> RetryPolicy:
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


def due_delivery_ids(session: Session, limit: int, now: datetime | None = None) -> list[int]:
    """Up to `limit` due deliveries, taken round-robin over their receivers (target URLs): each
    receiver's earliest due delivery first, then each one's second, and so on. So a receiver with a
    backlog (a tarpit that holds every attempt to the timeout, a receiver that is down) cannot fill
    the batch and delay everyone else's webhooks; within one receiver, the earliest go first."""
    now = now or utcnow()
    turn = (
        func.row_number()
        .over(partition_by=WebhookDelivery.url, order_by=(WebhookDelivery.next_attempt_at, WebhookDelivery.id))
        .label("turn")
    )
    due = (
        select(WebhookDelivery.id, WebhookDelivery.next_attempt_at, turn)
        .where(WebhookDelivery.state == DELIVERY_PENDING, WebhookDelivery.next_attempt_at <= now)
        .subquery()
    )
    q = select(due.c.id).order_by(due.c.turn, due.c.next_attempt_at, due.c.id).limit(limit)
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
    record_webhook_attempt(outcome)
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


async def _isolated(delivery: WebhookDelivery, secret: Secrets | Exception, web: FetchPolicy) -> Attempt:
    """One attempt that never raises: an unforeseen exception (a bug, an input no check foresaw) becomes a
    failed attempt of this delivery alone, retried on the schedule, instead of escaping the batch."""
    start = time.monotonic()
    with tracing.span(
        "webhook.delivery",
        request_id=delivery.request_id,
        delivery_id=delivery.id,
        event_type=delivery.event_type,
        attempt=delivery.attempts + 1,
    ) as span:
        try:
            if isinstance(secret, Exception):
                raise secret  # the tenant's secrets could not be read: this delivery fails, not the batch
            attempt = await deliver(delivery.url, delivery.payload, delivery.event_id, secret, web)
        except Exception as exc:
            log.exception("webhook delivery %s: unexpected error", delivery.id)
            error = f"internal error: {type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
            attempt = Attempt(None, error, int((time.monotonic() - start) * 1000))
        span.set_attribute("outcome", outcome_of(attempt))
        if attempt.status_code is not None:
            span.set_attribute("http.response.status_code", attempt.status_code)
        return attempt


def send_deliveries(
    sessions: sessionmaker[Session],
    delivery_ids: list[int],
    *,
    secret: str | None,
    fetch_policy: FetchPolicy,
    policy: RetryPolicy,
    rng: random.Random | None = None,
) -> list[SentAttempt]:
    """Claim each delivery, POST the claimed ones concurrently, record every attempt.

    Each event is signed with the secrets of its request's tenant (`db.webhook_secrets`); `secret`
    (`IMGPIPE_WEBHOOK_SECRET`) signs only the events of tenants that have none (keys from the env list).

    Each delivery is isolated: whatever one attempt raises is recorded as that delivery's failed attempt,
    and a failure to record one attempt (rolled back; the delivery is due again when its lease runs out)
    does not keep the others from being recorded.
    """
    rng = rng or random.Random()
    web = policy.fetch_policy(fetch_policy)
    with sessions() as s:
        claimed = [d for d in (claim(s, i, policy.lease_s) for i in delivery_ids) if d is not None]
        if not claimed:
            return []
        started = utcnow()
        keys = _secrets_of(s, claimed, secret)

        async def send_all() -> list[Attempt]:
            return await asyncio.gather(*(_isolated(d, keys[d.id], web) for d in claimed))

        attempts = asyncio.run(send_all())
        sent = []
        for d, a in zip(claimed, attempts, strict=True):
            try:
                sent.append(SentAttempt(d.id, a, record_attempt(s, d, a, started, policy, rng)))
            except Exception:
                log.exception("webhook delivery %s: could not record its attempt", d.id)
                s.rollback()
        return sent


def _secrets_of(
    session: Session, deliveries: list[WebhookDelivery], global_secret: str | None
) -> dict[int, Secrets | Exception]:
    """delivery id -> the secrets that sign it: its tenant's own, else the global one; or the error that
    kept them from being read (recorded as that delivery's attempt)."""
    owners = dict(
        session.execute(
            select(ImageRequest.id, ImageRequest.owner).where(ImageRequest.id.in_({d.request_id for d in deliveries}))
        ).all()
    )
    out: dict[int, Secrets | Exception] = {}
    for d in deliveries:
        owner = owners.get(d.request_id)
        try:
            own = signing_secrets(session, [owner]).get(owner) if owner else None
        except Exception as exc:
            session.rollback()
            out[d.id] = exc
            continue
        out[d.id] = own or global_secret
    return out


def send_due(
    sessions: sessionmaker[Session], *, secret: str | None, fetch_policy: FetchPolicy, policy: RetryPolicy, limit: int
) -> list[SentAttempt]:
    """Send up to `limit` deliveries whose time has come (the retry sensor's tick)."""
    with sessions() as s:
        ids = due_delivery_ids(s, limit)
    return send_deliveries(sessions, ids, secret=secret, fetch_policy=fetch_policy, policy=policy) if ids else []
