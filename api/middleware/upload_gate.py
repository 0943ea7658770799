"""Per-key upload rate limit (`IMGPIPE_UPLOAD_RATE_LIMIT`), answered with 429 and `Retry-After`.

Built on the `limits` library's moving window: counted in Redis when `IMGPIPE_REDIS_URL` is set (so
every API process shares one count per key), in process memory otherwise. Redis is a cache here too:
when it is unreachable the limit is not enforced (and a warning is logged) rather than refusing work.

`UploadGate` applies the key check and the limit to `POST /api/upload` before the body is read, so a
caller without a valid key, or over its limit, cannot make the server receive and parse megabytes first
(FastAPI parses a form body before it runs a route's dependencies).
"""

from __future__ import annotations

import logging
import math
import time

from fastapi import HTTPException, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from api.auth import authenticate
from api.errors import ApiError
from api.middleware.paths import route_path

log = logging.getLogger("imgpipe.api.ratelimit")
_DISABLED = ("", "off", "0")
UPLOAD_PATH = "/api/upload"


class UploadRateLimiter:
    """A per-key moving-window limit on one kind of call (`action`: "upload", "replay")."""

    def __init__(
        self, spec: str, redis_url: str | None, action: str = "upload", setting: str = "IMGPIPE_UPLOAD_RATE_LIMIT"
    ) -> None:
        from limits import parse_many, storage, strategies

        self.spec, self.action, self.setting = spec, action, setting
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
        """Count one call for `owner`; None when allowed, else the seconds until it would be."""
        if not self.items:
            return None
        try:
            blocked = [item for item in self.items if not self.limiter.test(item, self.action, owner)]
            if not blocked:
                blocked = [item for item in self.items if not self.limiter.hit(item, self.action, owner)]
            if not blocked:
                return None
            reset = max(self.limiter.get_window_stats(item, self.action, owner).reset_time for item in blocked)
        except Exception as exc:  # the counter's store is down: fail open, loudly
            log.warning("%s rate limit not enforced: %s: %s", self.action, type(exc).__name__, exc)
            return None
        return max(1, math.ceil(reset - time.time()))

    def count(self, owner: str) -> None:
        """Count one call for `owner`; ApiError 429 with `Retry-After` when it is over the limit."""
        wait = self.retry_after(owner)
        if wait is not None:
            raise ApiError(
                429,
                f"too many {self.action}s: the limit is {self.spec} per API key",
                [{"row": 0, "column": None, "message": f"retry after {wait} s ({self.setting})"}],
                headers={"Retry-After": str(wait)},
            )


def limit_uploads(request: Request) -> str:
    """The caller's owner id after counting this upload; 401 (bad key) or 429 (over the limit) otherwise."""
    owner = authenticate(request)
    limiter: UploadRateLimiter = request.app.state.upload_limiter
    limiter.count(owner)
    return owner


def upload_owner(request: Request) -> str:
    """Dependency of the upload route: the owner `UploadGate` established (or the same checks, done now)."""
    owner = request.scope.get("state", {}).get("upload_owner")
    return owner if owner is not None else limit_uploads(request)


class UploadGate:
    """Pure ASGI middleware: authenticate and rate-limit uploads before a byte of their body is read."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or route_path(scope).rstrip("/") != UPLOAD_PATH:
            await self.app(scope, receive, send)
            return
        try:
            owner = await run_in_threadpool(limit_uploads, Request(scope))
        except ApiError as exc:
            await self._refuse(exc.status_code, {"detail": exc.detail, "errors": exc.errors}, exc.headers, scope, send)
            return
        except HTTPException as exc:
            await self._refuse(exc.status_code, {"detail": exc.detail, "errors": []}, exc.headers, scope, send)
            return
        scope.setdefault("state", {})["upload_owner"] = owner
        await self.app(scope, receive, send)

    @staticmethod
    async def _refuse(code: int, body: dict, headers: dict | None, scope: Scope, send: Send) -> None:
        # The unread body stays on the wire: close the connection rather than read it.
        response = JSONResponse(body, code, headers={**(headers or {}), "Connection": "close"})

        async def no_body() -> dict:
            return {"type": "http.disconnect"}

        await response(scope, no_body, send)
