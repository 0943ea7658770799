"""Every middleware of the app, installed in one place and in one order (the last added runs first):
security headers (and CORS) outermost, so even a refusal below carries them; then the JSON answer to an
unhandled exception (a 500 in the error shape, with those headers); then the upload gate (key and rate
limit, before a byte of the body is read); then the upload body limit. Around all of them: the request's
telemetry (logging context, duration, upload outcome), so every answer is counted."""

from __future__ import annotations

from fastapi import FastAPI

from api.middleware import security
from api.middleware.body_limit import BodySizeLimit
from api.middleware.internal_error import InternalErrorAsJson
from api.middleware.telemetry import RequestTelemetry
from api.middleware.upload_gate import UploadGate, UploadRateLimiter
from image_pipeline.domain.settings import Settings


def install(app: FastAPI, settings: Settings) -> None:
    app.state.upload_limiter = UploadRateLimiter(settings.upload_rate_limit, settings.redis_url)
    app.state.replay_limiter = UploadRateLimiter(
        settings.replay_rate_limit, settings.redis_url, action="webhook replay", setting="IMGPIPE_REPLAY_RATE_LIMIT"
    )
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes)
    app.add_middleware(UploadGate)
    app.add_middleware(InternalErrorAsJson)
    security.install(app, settings)
    app.add_middleware(RequestTelemetry)
