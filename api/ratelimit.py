"""Per-key upload rate limit (`IMGPIPE_UPLOAD_RATE_LIMIT`), answered with 429 and `Retry-After`.

Built on the `limits` library's moving window: counted in Redis when `IMGPIPE_REDIS_URL` is set (so
every API process shares one count per key), in process memory otherwise. Redis is a cache here too:
when it is unreachable the limit is not enforced (and a warning is logged) rather than refusing work.
"""

from __future__ import annotations

import logging
import math
import time

from fastapi import Request

from api.auth import authenticate
from api.errors import ApiError

log = logging.getLogger("imgpipe.api.ratelimit")
_DISABLED = ("", "off", "0")


class UploadRateLimiter:
    def __init__(self, spec: str, redis_url: str | None) -> None:
        from limits import parse_many, storage, strategies

        self.spec = spec
        self.items = [] if spec.strip().lower() in _DISABLED else parse_many(spec)
        if redis_url:
            store = storage.RedisStorage(
                redis_url, key_prefix="imgpipe:ratelimit", socket_timeout=1.0, socket_connect_timeout=1.0
            )
        else:
            store = storage.MemoryStorage()
        self.storage = store
        self.limiter = strategies.MovingWindowRateLimiter(store)

    def retry_after(self, owner: str) -> int | None:
        """Count one upload for `owner`; None when allowed, else the seconds until it would be."""
        if not self.items:
            return None
        try:
            blocked = [item for item in self.items if not self.limiter.test(item, "upload", owner)]
            if not blocked:
                blocked = [item for item in self.items if not self.limiter.hit(item, "upload", owner)]
            if not blocked:
                return None
            reset = max(self.limiter.get_window_stats(item, "upload", owner).reset_time for item in blocked)
        except Exception as exc:  # noqa: BLE001 (the counter's store is down: fail open, loudly)
            log.warning("upload rate limit not enforced: %s: %s", type(exc).__name__, exc)
            return None
        return max(1, math.ceil(reset - time.time()))


def limit_uploads(request: Request) -> str:
    """Dependency for the upload route: the caller's owner id, or 429 with Retry-After."""
    owner = authenticate(request)
    wait = request.app.state.upload_limiter.retry_after(owner)
    if wait is not None:
        raise ApiError(
            429,
            f"too many uploads: the limit is {request.app.state.upload_limiter.spec} per API key",
            [{"row": 0, "column": None, "message": f"retry after {wait} s (IMGPIPE_UPLOAD_RATE_LIMIT)"}],
            headers={"Retry-After": str(wait)},
        )
    return owner
