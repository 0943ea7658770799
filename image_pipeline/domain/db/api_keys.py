"""API keys in the app database: created, listed, revoked (the `imgpipe keys` CLI) and looked up by the API.

A key is 256 random bits (`secrets.token_urlsafe(32)`) behind a short `imgp_` prefix. Only its SHA-256
is stored: a key that random cannot be brute-forced from its hash, so a slow password hash would
only cost time on every request. The API finds a key by the hash of what the caller sent (an
indexed lookup that reveals nothing about the key) and compares the stored hash in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from image_pipeline.domain.clock import utcnow
from image_pipeline.domain.db.models import ApiKey

KEY_PREFIX = "imgp_"


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def owner_for_hash(digest: str) -> str:
    """The tenant id of a key, from its SHA-256 hex: stable, non-reversible, the same for env and DB keys."""
    return "key_" + digest[:24]


def create_key(session: Session, name: str) -> tuple[ApiKey, str]:
    """A new key: returns the row and the plaintext key (shown once; only its hash is stored)."""
    name = name.strip()
    if not name or len(name) > 100:
        raise ValueError("a key needs a name of 1 to 100 characters")
    plain = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(name=name, prefix=plain[:12], hash=key_hash(plain))
    session.add(row)
    session.commit()
    return row, plain


def revoke_key(session: Session, key_id: int) -> ApiKey | None:
    """Revoke key `key_id` (idempotent). None when there is no such key."""
    row = session.get(ApiKey, key_id)
    if row is None:
        return None
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.commit()
    return row


def list_keys(session: Session) -> Sequence[ApiKey]:
    return session.scalars(select(ApiKey).order_by(ApiKey.id)).all()


def find_active_key(session: Session, key: str) -> ApiKey | None:
    """The active (not revoked) key row matching `key`, or None."""
    digest = key_hash(key)
    row = session.scalars(select(ApiKey).where(ApiKey.hash == digest, ApiKey.revoked_at.is_(None))).first()
    if row is None or not hmac.compare_digest(row.hash.encode(), digest.encode()):
        return None
    return row


def is_revoked(session: Session, key: str) -> bool:
    """Whether `key` has a revoked row: a key revoked in the database stays revoked wherever else it is listed."""
    digest = key_hash(key)
    return (
        session.scalars(select(ApiKey.id).where(ApiKey.hash == digest, ApiKey.revoked_at.is_not(None))).first()
        is not None
    )
