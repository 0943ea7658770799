"""Accepting an upload (what `POST /api/upload` does once the CSV passed `parse_csv`): the input CSV is
stored first, then the request is recorded `pending`, so the upload sensor never sees a request whose
CSV is not there yet. Blocking I/O (object store, a committed insert): the API runs it in a thread."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.orm import Session

from image_pipeline.domain.db.requests import create_request
from image_pipeline.domain.keys import input_key, request_prefix
from image_pipeline.domain.objects import ObjectStore


@dataclass(frozen=True)
class Upload:
    owner: str
    data: bytes
    rows: int
    urls: int
    filename: str | None = None
    webhook_url: str | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None
    profile: str | None = None  # the resolved profile's canonical JSON (domain.profiles); None = default
    force: bool = False  # fetch and encode every URL, whatever the sync memory holds


def new_request_id() -> str:
    return str(uuid.uuid4())


def accept(store: ObjectStore, session: Session, request_id: str, upload: Upload) -> None:
    """Store the upload's CSV, then record the request (pending). Raises the database's IntegrityError
    when another upload with the same idempotency key won the insert (call `discard` then)."""
    key = input_key(request_id)
    store.put(key, upload.data, "text/csv; charset=utf-8")
    create_request(
        session,
        request_id=request_id,
        owner=upload.owner,
        input_key=key,
        webhook_url=upload.webhook_url,
        filename=(upload.filename or "")[:255] or None,
        row_count=upload.rows,
        url_count=upload.urls,
        idempotency_key=upload.idempotency_key,
        request_hash=upload.request_hash,
        profile=upload.profile,
        force=upload.force,
    )


def discard(store: ObjectStore, request_id: str) -> None:
    """Remove what `accept` stored for a request that was not recorded."""
    store.delete_prefix(request_prefix(request_id))
