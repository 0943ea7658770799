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


def route_template(scope: Scope, path: str, root_path: str = "") -> str:
    """The matched route's path template (`/api/status/{request_id}`): a bounded label, unlike `path`.

    Rebuilt from the path and the parameters the router matched in it (each value put back as its
    `{name}`), because the route object's own `path` lacks the prefixes of the routers it is in."""
    if scope.get("route") is None:
        if scope.get("endpoint") is None:
            return "unmatched"  # a 404, or refused by a middleware before routing
        return scope.get("root_path", "")[len(root_path) :] + "/{path}"  # a mounted app (/static)
    for name, value in (scope.get("path_params") or {}).items():
        head, sep, tail = path.rpartition(f"/{str(value).lstrip('/')}")
        if sep and (not tail or tail.startswith("/")):
            path = f"{head}/{{{name}}}{tail}"
    return path


class RequestTelemetry:
    """Pure ASGI middleware (no body buffering): see the module doc."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Before a mount moves its prefix into root_path.
        start, path, root = perf_counter(), route_path(scope), scope.get("root_path", "")
        status, recorded = 500, False  # 500: the answer if none is sent (the app raised past every handler)

        def record() -> None:
            nonlocal recorded
            if not recorded:
                recorded = True
                record_http(scope["method"], route_template(scope, path, root), status, perf_counter() - start)
                if scope["method"] == "POST" and path.rstrip("/") == UPLOAD_PATH:
                    record_upload(upload_outcome(status))

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)
            # Timed to the last byte of the answer: background tasks (the upload's run launch) run after
            # it, inside the app call, and are no part of the caller's wait.
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                record()

        with log_context():
            try:
                await self.app(scope, receive, sending)
            finally:
                record()
