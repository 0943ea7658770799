"""Redis cache of status documents. Optional and disposable: every error is swallowed and the caller
falls back to the database, so Redis being down or flushed never changes an answer."""

from __future__ import annotations

import json
import logging

from image_pipeline.domain.status import is_final

log = logging.getLogger(__name__)
TTL_SECONDS = 24 * 3600
# A document of a request still in progress lives briefly: if Redis was unreachable when a newer one
# was written (and the stale one could not be deleted either), the stale answer lasts seconds, not a day.
PROGRESS_TTL_SECONDS = 30


def _key(request_id: str) -> str:
    return f"imgpipe:status:{request_id}"


class StatusCache:
    def __init__(self, redis_url: str | None, *, timeout: float = 0.5) -> None:
        self._redis = None
        if redis_url:
            import redis

            self._redis = redis.Redis.from_url(
                redis_url, socket_timeout=timeout, socket_connect_timeout=timeout, health_check_interval=30
            )

    @property
    def enabled(self) -> bool:
        return self._redis is not None

    def get(self, request_id: str) -> dict | None:
        if self._redis is None:
            return None
        try:
            raw = self._redis.get(_key(request_id))
            return json.loads(raw) if raw else None
        except Exception as exc:  # a cache must never fail the caller
            log.warning("status cache read failed: %s", exc)
            return None

    def set(self, request_id: str, doc: dict) -> None:
        if self._redis is None:
            return
        try:
            ttl = TTL_SECONDS if is_final(doc.get("status")) else PROGRESS_TTL_SECONDS
            self._redis.set(_key(request_id), json.dumps(doc), ex=ttl)
        except Exception as exc:
            log.warning("status cache write failed: %s", exc)
            self.forget(request_id)

    def forget(self, request_id: str) -> None:
        if self._redis is None:
            return
        try:
            self._redis.delete(_key(request_id))
        except Exception:  # stale entries expire by TTL
            pass

    def ping(self) -> None:
        """Raises when Redis does not answer (the readiness probe; every other method swallows errors)."""
        if self._redis is not None:
            self._redis.ping()

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()
