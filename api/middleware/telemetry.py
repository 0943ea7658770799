"""Per HTTP request: a logging context (request_id and tenant are bound into it further in), the answer's
duration by route template, and the outcome of every upload, refusals of the gates in front included.

Outermost of our middleware (installed last), so a refusal by the upload gate or the body limit is timed
and counted like any other answer."""

from __future__ import annotations

from time import perf_counter

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.middleware.paths import route_path
from api.middleware.upload_gate import UPLOAD_PATH
from image_pipeline.domain.telemetry.logs import log_context
from image_pipeline.domain.telemetry.metrics import record_http, record_upload

# An upload's answer, in words: what `imgpipe_uploads_total{outcome}` counts.
_UPLOAD_OUTCOMES = {
    400: "unreadable",  # not UTF-8
    401: "unauthorized",
    413: "too_large",
    415: "not_csv",
    422: "invalid",  # CSV problems, webhook_url, profile/options, a reused Idempotency-Key
    429: "rate_limited",
}


def upload_outcome(status: int) -> str:
    if 200 <= status < 300:
        return "accepted"
    return _UPLOAD_OUTCOMES.get(status, "error" if status >= 500 else str(status))


def route_template(scope: Scope) -> str:
    """The matched route's path template (`/api/status/{request_id}`): a bounded label, unlike the path."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class RequestTelemetry:
    """Pure ASGI middleware (no body buffering): see the module doc."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # the answer if none is sent (the app raised past every handler)

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        start = perf_counter()
        with log_context():
            try:
                await self.app(scope, receive, sending)
            finally:
                record_http(scope["method"], route_template(scope), status, perf_counter() - start)
                if scope["method"] == "POST" and route_path(scope).rstrip("/") == UPLOAD_PATH:
                    record_upload(upload_outcome(status))
