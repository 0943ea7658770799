"""`Idempotency-Key` on uploads: a retried POST gets the original answer instead of a second request.

Same key + same body (file bytes and webhook_url) within `IMGPIPE_IDEMPOTENCY_WINDOW_HOURS` -> the
original `request_id` (202, header `Idempotent-Replayed: true`); same key + a different body -> 422.
Concurrent duplicates are settled by the database: (owner, idempotency_key) is unique, so the second
insert fails and that caller answers with the winner's request.
"""

from __future__ import annotations

import hashlib

from fastapi import Request, Response
from sqlalchemy.orm import Session

from api.errors import ApiError
from api.schemas.requests import UploadAccepted
from image_pipeline.domain.db.models import ImageRequest
from image_pipeline.domain.db.requests import find_by_idempotency_key
from image_pipeline.domain.settings import Settings

HEADER = "Idempotency-Key"
MAX_KEY_CHARS = 255


def key_of(request: Request) -> str | None:
    """The request's Idempotency-Key (None without one); 400 when it is empty, too long or not printable."""
    key = request.headers.get(HEADER)
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > MAX_KEY_CHARS or not all(32 < ord(c) < 127 for c in key):
        raise ApiError(
            400,
            f"{HEADER} must be 1-{MAX_KEY_CHARS} printable ASCII characters without spaces",
            [{"row": 0, "column": HEADER, "message": "invalid idempotency key"}],
        )
    return key


def fingerprint(data: bytes, webhook_url: str | None, profile: str | None = None, force: bool = False) -> str:
    """What "the same body" means: the file's bytes, the webhook URL, the resolved output profile
    (its fingerprint: `profile` + `options` as they resolved; none for the seed's default output) and
    `force` (only when set, so fingerprints of uploads without it stay what they were)."""
    h = hashlib.sha256()
    h.update(hashlib.sha256(data).digest())
    h.update((webhook_url or "").encode())
    if profile:
        h.update(b"\0profile:" + profile.encode())
    if force:
        h.update(b"\0force")
    return h.hexdigest()


def previous_answer(
    session: Session, owner: str, key: str, digest: str, settings: Settings, response: Response
) -> UploadAccepted | None:
    """The original answer for this key, None when the key is new (or expired); 422 if the body differs."""
    req = find_by_idempotency_key(session, owner, key, settings.idempotency_window_hours * 3600)
    return None if req is None else replay_answer(req, digest, settings, response)


def replay_answer(req: ImageRequest, digest: str, settings: Settings, response: Response) -> UploadAccepted:
    if req.request_hash != digest:
        raise ApiError(
            422,
            f"{HEADER} was already used with a different request",
            [{"row": 0, "column": HEADER, "message": f"key belongs to request {req.id} with another file/webhook_url"}],
        )
    response.headers["Idempotent-Replayed"] = "true"
    return UploadAccepted(
        request_id=req.id,
        message=f"accepted: {req.row_count} products, {req.url_count} images (idempotent replay)",
        status_url=f"{settings.resolved_api_base_url}/api/status/{req.id}",
    )
