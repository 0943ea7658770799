"""The one wiring point: `Settings` in, the domain objects every door uses out.

The API, the Dagster resource, the CLI and the benchmark all call these, so a limit set in the
environment (or `.env`) means the same thing in every process: the upload check and the pipeline's
re-parse apply the very same `CsvLimits`, the webhook secret is read by whoever sends a webhook.
Heavy clients (database engine, S3 client) come from per-process caches keyed by their
configuration (`process_cache`), so a process that runs many requests builds them once.
"""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from image_pipeline.domain.catalog.csv_input import CsvLimits
from image_pipeline.domain.db.engine import session_factory, shared_engine
from image_pipeline.domain.images.url_policy import FetchPolicy
from image_pipeline.domain.images.worker import ProcessOptions
from image_pipeline.domain.objects import ObjectStore
from image_pipeline.domain.objects.local import LocalStore
from image_pipeline.domain.request.context import RequestContext
from image_pipeline.domain.request.status_cache import StatusCache
from image_pipeline.domain.settings import Settings
from image_pipeline.domain.webhooks.delivery import RetryPolicy
from image_pipeline.domain.webhooks.events import EventLimits


def make_store(settings: Settings, client=None) -> ObjectStore:  # a boto3 S3 client
    """The configured store: S3 when `IMGPIPE_S3_BUCKET` is set (this process's shared client unless one is
    given), else the local objects directory."""
    if settings.s3_bucket:
        from image_pipeline.domain.objects.s3 import S3Store, shared_s3_client

        client = client or shared_s3_client(settings.s3_endpoint_url, settings.s3_region, settings.s3_checksum)
        return S3Store(client, settings.s3_bucket, settings.resolved_public_base_url, settings.s3_part_size)
    return LocalStore(settings.objects_dir, settings.resolved_public_base_url)


def make_sessions(settings: Settings) -> sessionmaker[Session]:
    """Sessions on this process's engine for the app database."""
    return session_factory(shared_engine(settings.resolved_database_url))


def build_context(settings: Settings) -> RequestContext:
    """Everything a step of a request needs, from `settings` alone."""
    return RequestContext(
        sessions=make_sessions(settings),
        store=make_store(settings),
        cache=StatusCache(settings.redis_url),
        policy=FetchPolicy.from_settings(settings),
        options=ProcessOptions.from_settings(settings),
        limits=CsvLimits.from_settings(settings),
        api_base_url=settings.resolved_api_base_url,
        webhook_secret=settings.webhook_secret,
        retry=RetryPolicy.from_settings(settings),
        event_limits=EventLimits.from_settings(settings),
    )
