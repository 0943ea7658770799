"""The FastAPI application. Run with `uvicorn --factory api.main:create_app`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import errors, middleware, openapi
from api.routes import api_router, files_router, probes_router
from api.routes.metrics import router as metrics_router
from api.routes.pages import router as page_router
from api.routes.pages import static_files
from api.webhook_dns import TenantResolver
from image_pipeline.domain.db.engine import upgrade
from image_pipeline.domain.readiness import dependency_checks
from image_pipeline.domain.services import build_context
from image_pipeline.domain.settings import Settings
from image_pipeline.domain.telemetry import tracing
from image_pipeline.domain.telemetry.db_gauges import DatabaseGauges
from image_pipeline.domain.telemetry.logs import configure_logging

log = logging.getLogger("imgpipe.api")


def create_app(settings: Settings | None = None, *, migrate: bool | None = None) -> FastAPI:
    """The app; `migrate` (default IMGPIPE_MIGRATE_ON_START) applies the database migrations at start-up."""
    settings = settings or Settings()
    configure_logging(settings.log_format)
    migrate = settings.migrate_on_start if migrate is None else migrate

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if migrate:
            upgrade(settings.resolved_database_url)
        ctx = build_context(settings)  # the same wiring as the pipeline's: one path from settings to behaviour
        engine = ctx.sessions.kw["bind"]
        app.state.context, app.state.engine = ctx, engine
        app.state.sessions, app.state.store, app.state.cache = ctx.sessions, ctx.store, ctx.cache
        app.state.db_gauges = DatabaseGauges(ctx.sessions)
        app.state.readiness_checks = dependency_checks(settings, engine, ctx.cache)
        app.state.launcher = None
        if settings.dagster_url:  # fast path: launch runs at once (the upload sensor stays the safety net)
            from image_pipeline.domain.request.fast_launch import FastLauncher

            app.state.launcher = FastLauncher(
                settings.dagster_url,
                app.state.sessions,
                claim_timeout_s=settings.launch_claim_timeout,
                settings=settings,
            )
        try:
            yield
        finally:
            if app.state.launcher is not None:
                await app.state.launcher.aclose()
            app.state.cache.close()
            engine.dispose()  # this process's engine: closes its pooled connections, stays usable

    app = FastAPI(
        title="image-pipeline",
        version="0.1.0",
        lifespan=lifespan,
        description="Upload a CSV of product image URLs; get recompressed JPEGs, progress and a signed webhook.",
    )
    app.state.settings = settings
    app.state.webhook_resolver = TenantResolver(settings.webhook_dns_per_key, settings.webhook_dns_total)
    errors.install(app)
    openapi.install(app)
    app.include_router(api_router)
    app.include_router(files_router)
    app.include_router(probes_router)
    app.include_router(page_router)
    app.include_router(metrics_router)
    app.mount("/static", static_files, name="static")
    middleware.install(app, settings)
    provider = tracing.setup_from_env("image-pipeline-api")
    if provider is not None:  # off unless OTEL_* configures an exporter (docs/observability.md)
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(app, tracer_provider=provider, excluded_urls="/metrics")
    return app
