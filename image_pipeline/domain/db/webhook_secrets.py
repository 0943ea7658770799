"""Tenants' webhook signing secrets in the app database: made with a key, rotated, looked up to sign.

Kept apart from `api_keys` (the key itself is only ever stored hashed; a signing secret must be
stored as it is, since every attempt signs with it). See `models.WebhookSecret`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from image_pipeline.domain.clock import utcnow
from image_pipeline.domain.db.api_keys import owner_for_hash
from image_pipeline.domain.db.models import ApiKey, WebhookSecret
from image_pipeline.domain.signing_secrets import check_secret, new_secret


def add_secret(session: Session, key: ApiKey) -> str:
    """A new secret for the tenant of `key` (committed); returns it (shown once)."""
    secret = new_secret()
    session.add(WebhookSecret(owner=owner_for_hash(key.hash), api_key_id=key.id, secret=secret))
    session.commit()
    return secret


def rotate_secret(session: Session, key: ApiKey, overlap: timedelta) -> tuple[str, int]:
    """A new secret for the tenant of `key`; its current secrets keep signing for `overlap` (then retire).

    Returns the new secret and how many old ones were scheduled to retire. A tenant with no secret
    yet (a key made before per-tenant secrets) gets its first one; `IMGPIPE_WEBHOOK_SECRET` then no
    longer signs its events.
    """
    now = utcnow()
    owner = owner_for_hash(key.hash)
    retiring = session.execute(
        update(WebhookSecret)
        .where(
            WebhookSecret.owner == owner,
            or_(WebhookSecret.retire_at.is_(None), WebhookSecret.retire_at > now + overlap),
        )
        .values(retire_at=now + overlap)
    ).rowcount
    secret = new_secret()
    session.add(WebhookSecret(owner=owner, api_key_id=key.id, secret=secret, created_at=now))
    session.commit()
    return secret, retiring


def signing_secrets(session: Session, owners: Iterable[str], now: datetime | None = None) -> dict[str, list[str]]:
    """owner -> the secrets that sign its events now (newest first); owners without any are absent.

    Every secret is checked as it is read: one that is not a valid secret raises InvalidSecret.
    """
    now = now or utcnow()
    owners = sorted(set(owners))
    if not owners:
        return {}
    rows = session.execute(
        select(WebhookSecret.owner, WebhookSecret.secret, WebhookSecret.id)
        .where(WebhookSecret.owner.in_(owners), or_(WebhookSecret.retire_at.is_(None), WebhookSecret.retire_at > now))
        .order_by(WebhookSecret.id.desc())
    ).all()
    out: dict[str, list[str]] = {}
    for owner, secret, sid in rows:
        out.setdefault(owner, []).append(check_secret(secret, f"webhook secret {sid} of tenant {owner}"))
    return out


def secret_state(session: Session, owner: str, now: datetime | None = None) -> str:
    """For `imgpipe keys list`: `own` (n active), or `global` (signed with IMGPIPE_WEBHOOK_SECRET)."""
    now = now or utcnow()
    n = len(
        session.scalars(
            select(WebhookSecret.id).where(
                WebhookSecret.owner == owner, or_(WebhookSecret.retire_at.is_(None), WebhookSecret.retire_at > now)
            )
        ).all()
    )
    return f"own ({n})" if n else "global"
