"""SQLAlchemy 2 models of the app database. Schema changes go through Alembic (db/migrations)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from image_pipeline.domain.clock import utcnow
from image_pipeline.domain.status import PENDING


class Base(DeclarativeBase):
    pass


class ImageRequest(Base):
    """One accepted upload. `seq` orders requests for the upload sensor; `id` is the public request_id."""

    __tablename__ = "requests"

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(36), unique=True, nullable=False)
    owner: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    status: Mapped[str] = mapped_column(String(20), nullable=False, default=PENDING)
    webhook_url: Mapped[str | None] = mapped_column(Text)
    filename: Mapped[str | None] = mapped_column(String(255))
    input_key: Mapped[str] = mapped_column(Text, nullable=False)
    output_csv_key: Mapped[str | None] = mapped_column(Text)
    row_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    url_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    done_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    failed_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    bytes_in: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    bytes_out: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    final_event_sent: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # Re-runs of a request whose final event was already queued (retry schedule, backfill, a duplicate
    # run): `reruns` counts them, `rerun_open` is set while one is under way (the request keeps its final
    # status meanwhile); its end queues one `request.updated` event (see webhooks.outbox).
    reruns: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    rerun_open: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False, server_default=false())
    # Who launches the run (API fast path or upload sensor) claims it here first; a stale claim is
    # re-offered by the sensor (see db.requests.claim_launches).
    launch_claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    # Idempotent uploads: the caller's Idempotency-Key and a fingerprint of what was sent with it. The
    # unique constraint (NULLs are distinct) is what stops concurrent duplicates, not a prior lookup.
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    # The output profile frozen at upload (canonical JSON, domain.profiles); NULL = the seed's one JPEG.
    profile: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("ix_requests_status_seq", "status", "seq"),
        UniqueConstraint("owner", "idempotency_key", name="uq_requests_owner_idempotency_key"),
    )


class ImageResult(Base):
    """The outcome for one input URL; `idx` is its position in the request (row order, then cell order)."""

    __tablename__ = "image_results"

    request_id: Mapped[str] = mapped_column(String(36), ForeignKey("requests.id", ondelete="CASCADE"), primary_key=True)
    idx: Mapped[int] = mapped_column(Integer, primary_key=True)
    row: Mapped[int] = mapped_column(Integer, nullable=False)
    url: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(String(10), nullable=False)  # "done" | "failed"
    error: Mapped[str | None] = mapped_column(Text)
    bytes_in: Mapped[int | None] = mapped_column(BigInteger)
    bytes_out: Mapped[int | None] = mapped_column(BigInteger)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    output_key: Mapped[str | None] = mapped_column(Text)
    kept_original: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # Every rendition made (JSON list: name, key, format, width, height, bytes, quality, kept_original);
    # NULL for the seed's one JPEG, which the columns above describe whole.
    renditions: Mapped[str | None] = mapped_column(Text)
    # SSIMULACRA2 of the first output against its unencoded pixels, on the URLs a request samples.
    score: Mapped[float | None] = mapped_column(Float)
    # Why it failed, as a class (domain.images.failures): NULL for a URL that is done.
    failure_class: Mapped[str | None] = mapped_column(String(16))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)


class _WebhookEvent:
    """What an attempt and a delivery both record of the event: its request, id, type and target URL."""

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("requests.id", ondelete="CASCADE"), index=True, nullable=False
    )
    event_id: Mapped[str] = mapped_column(String(64), nullable=False)
    event_type: Mapped[str] = mapped_column(String(64), nullable=False)
    url: Mapped[str] = mapped_column(Text, nullable=False)


class WebhookAttempt(_WebhookEvent, Base):
    """One delivery attempt of one webhook event (all retries of an event share `event_id`)."""

    __tablename__ = "webhook_attempts"

    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    delivery_id: Mapped[int | None] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"),
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"),
        index=True,
    )
    attempt_no: Mapped[int | None] = mapped_column(Integer)


# States of a webhook delivery: waiting for its next attempt, done, given up, or refused by the receiver (410).
DELIVERY_PENDING, DELIVERY_DELIVERED, DELIVERY_FAILED, DELIVERY_GONE = "pending", "delivered", "failed", "gone"


class WebhookDelivery(_WebhookEvent, Base):
    """The outbox: one event owed to one webhook URL, with its retry schedule (survives restarts).

    `payload` is the exact body sent on every attempt; `event_id` is its `webhook-id` (the same on every
    retry and on a replay). A pending row is due when `next_attempt_at <= now`; whoever sends it first
    pushes `next_attempt_at` forward (a lease) in one conditional UPDATE, so two senders never overlap.
    """

    __tablename__ = "webhook_deliveries"

    payload: Mapped[str] = mapped_column(Text, nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False, default=DELIVERY_PENDING)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    replay_of: Mapped[int | None] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_webhook_deliveries_state_next", "state", "next_attempt_at"),)


class ApiKey(Base):
    """A bearer key created with `imgpipe keys create`. Only its SHA-256 is stored, never the key itself.

    `owner` (the tenant id of every request made with the key) is derived from the hash, the same way
    as for keys in `IMGPIPE_API_KEYS`, so moving a key from the env list into the database keeps its requests.
    """

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    prefix: Mapped[str] = mapped_column(String(16), nullable=False)  # first characters, to recognise a key
    hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)  # sha256 hex of the whole key
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class OutputProfile(Base):
    """A tenant's named output profile (`PUT /api/profiles/{name}`): canonical JSON (domain.profiles)."""

    __tablename__ = "profiles"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    owner: Mapped[str] = mapped_column(String(64), nullable=False)
    name: Mapped[str] = mapped_column(String(32), nullable=False)
    body: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)

    __table_args__ = (UniqueConstraint("owner", "name", name="uq_profiles_owner_name"),)


class WebhookSecret(Base):
    """A tenant's Standard Webhooks signing secret (`imgpipe keys create` / `rotate-secret`).

    Every event of a request is signed with each secret of the request's owner that is not retired
    (`retire_at` unset or in the future): during a rotation's overlap window the header carries one
    signature per secret, so receivers switch at their own pace. An owner with no row (a key from
    `IMGPIPE_API_KEYS`) is signed with `IMGPIPE_WEBHOOK_SECRET`. Stored as it is: signing needs it.
    """

    __tablename__ = "webhook_secrets"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    owner: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    api_key_id: Mapped[int | None] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), ForeignKey("api_keys.id", ondelete="SET NULL")
    )
    secret: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    retire_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
