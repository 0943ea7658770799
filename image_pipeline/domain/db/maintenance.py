"""Housekeeping queries: requests worth retrying, and requests past the retention period."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from image_pipeline.domain.db.models import ImageRequest, ImageResult, WebhookAttempt
from image_pipeline.domain.status import FAILED, FINAL_STATUSES, PARTIALLY_FAILED


def retry_candidates(session: Session, since: datetime, limit: int = 100) -> Sequence[ImageRequest]:
    """Finished requests with failed URLs (or failed as a whole) updated since `since`, oldest first."""
    q = (
        select(ImageRequest)
        .where(
            ImageRequest.status.in_((PARTIALLY_FAILED, FAILED)),
            ImageRequest.updated_at >= since,
        )
        .order_by(ImageRequest.seq)
        .limit(limit)
    )
    return session.scalars(q).all()


def expired_requests(session: Session, before: datetime, limit: int = 500) -> Sequence[ImageRequest]:
    """Requests created before `before` that are finished, or have not moved since then either."""
    q = (
        select(ImageRequest)
        .where(
            ImageRequest.created_at < before,
            or_(ImageRequest.status.in_(FINAL_STATUSES), ImageRequest.updated_at < before),
        )
        .order_by(ImageRequest.seq)
        .limit(limit)
    )
    return session.scalars(q).all()


def delete_requests(session: Session, request_ids: Sequence[str]) -> int:
    """Delete requests with their results and webhook attempts (explicitly: SQLite may not cascade)."""
    if not request_ids:
        return 0
    ids = list(request_ids)
    session.execute(delete(ImageResult).where(ImageResult.request_id.in_(ids)))
    session.execute(delete(WebhookAttempt).where(WebhookAttempt.request_id.in_(ids)))
    n = session.execute(delete(ImageRequest).where(ImageRequest.id.in_(ids))).rowcount
    session.commit()
    return n
