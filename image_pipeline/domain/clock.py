"""Time in UTC, the one way: SQLite hands timestamps back naive (they are UTC), PostgreSQL aware."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(dt: datetime | None) -> datetime | None:
    """`dt` with its timezone: a naive value (SQLite's) is UTC."""
    return dt.replace(tzinfo=UTC) if dt is not None and dt.tzinfo is None else dt


def iso_utc(dt: datetime | None) -> str | None:
    """ISO 8601 with the offset, as the API and the webhook events show times; None stays None."""
    aware = as_utc(dt)
    return aware.isoformat() if aware is not None else None
