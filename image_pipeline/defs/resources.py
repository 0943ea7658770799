"""The one resource the pipeline needs: connections and limits, built from `Settings` (IMGPIPE_*)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import PrivateAttr

from image_pipeline.settings import Settings

if TYPE_CHECKING:  # the domain modules (sqlalchemy ORM, httpx, ...) load when a step first needs them
    from image_pipeline.fetch import FetchPolicy
    from image_pipeline.pipeline import PipelineContext
    from image_pipeline.webhook_delivery import RetryPolicy


class ImagePipelineResource(dg.ConfigurableResource):
    """App database, object storage (S3 or a local directory), status cache, fetch and codec limits.

    Plain fields, no nested dagster-aws resource: importing dagster_aws costs ~2 s of start-up in every
    run process; boto3 is imported only when the first S3 client is made.
    """

    database_url: str
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_part_size: int = 8 * 1024 * 1024
    local_objects_dir: str = ".imgpipe/objects"
    public_base_url: str
    api_base_url: str
    redis_url: str | None = None
    webhook_secret: str | None = None
    jpeg_quality: int = 50
    max_image_pixels: int = 50_000_000
    fetch_allow: str = ""
    fetch_concurrency: int = 32
    per_host_concurrency: int = 8
    fetch_connect_timeout: float = 5.0
    fetch_read_timeout: float = 15.0
    fetch_total_timeout: float = 60.0
    fetch_max_bytes: int = 25 * 1024 * 1024
    fetch_max_redirects: int = 5
    max_rows: int = 10_000
    max_urls_per_row: int = 50
    chunk_size: int = 1000
    fanout_threshold: int = 1000
    executor: str = "in_process"
    # schedules and asset checks (issue 7)
    retry_lookback_hours: int = 24
    retry_max_attempts: int = 3
    retention_days: int | None = None
    check_decode_sample: int = 200
    # webhook delivery (issue 5)
    webhook_timeout: float = 10.0
    webhook_retry_schedule: str = "5,30,120,600,1800,3600*23"
    webhook_retry_jitter: float = 0.2
    webhook_retry_batch: int = 20
    webhook_max_products: int = 1000
    webhook_max_urls: int = 10_000
    # Performance (issue 9)
    launch_claim_timeout: float = 60.0
    encode_workers: int = 0
    encode_pool: str = "thread"
    max_dimension: int | None = None
    fast_jpeg: bool = True

    _ctx: Any = PrivateAttr(default=None)

    def fetch_policy(self) -> FetchPolicy:
        from image_pipeline.fetch import FetchPolicy
        from image_pipeline.settings import parse_allow

        return FetchPolicy(
            allow=parse_allow(self.fetch_allow),
            connect_timeout=self.fetch_connect_timeout,
            read_timeout=self.fetch_read_timeout,
            total_timeout=self.fetch_total_timeout,
            max_bytes=self.fetch_max_bytes,
            max_redirects=self.fetch_max_redirects,
        )

    def job_for(self, url_count: int) -> str:
        """Small requests run in-process (lowest latency); large ones on the configured executor."""
        from image_pipeline.defs.jobs import FANOUT_JOB_NAME, process_request_job

        if self.executor != "in_process" and url_count >= self.fanout_threshold:
            return FANOUT_JOB_NAME
        return process_request_job.name

    def retry_policy(self) -> RetryPolicy:
        from image_pipeline.settings import parse_retry_schedule
        from image_pipeline.webhook_delivery import RetryPolicy

        return RetryPolicy(
            tuple(parse_retry_schedule(self.webhook_retry_schedule)), self.webhook_retry_jitter, self.webhook_timeout
        )

    def context(self) -> PipelineContext:
        """Built once per run (resources are per run); its heavy clients (S3 client, database engine and
        pool) come from per-process caches keyed by their configuration, so a process executing many
        runs (a Celery run worker) builds them once (image_pipeline.process_cache)."""
        if self._ctx is None:
            from image_pipeline.csv_input import CsvLimits
            from image_pipeline.pipeline import PipelineContext
            from image_pipeline.processing import ProcessOptions
            from image_pipeline.storage import LocalStore, S3Store, shared_s3_client
            from image_pipeline.store.cache import StatusCache
            from image_pipeline.store.db import session_factory, shared_engine
            from image_pipeline.webhooks import EventLimits

            store = (
                S3Store(
                    shared_s3_client(self.s3_endpoint_url, self.s3_region),
                    self.s3_bucket,
                    self.public_base_url,
                    self.s3_part_size,
                )
                if self.s3_bucket
                else LocalStore(self.local_objects_dir, self.public_base_url)
            )
            self._ctx = PipelineContext(
                sessions=session_factory(shared_engine(self.database_url)),
                store=store,
                cache=StatusCache(self.redis_url),
                policy=self.fetch_policy(),
                options=ProcessOptions(
                    quality=self.jpeg_quality,
                    max_pixels=self.max_image_pixels,
                    concurrency=self.fetch_concurrency,
                    per_host=self.per_host_concurrency,
                    per_host_redis_url=self.redis_url,
                    encode_workers=self.encode_workers,
                    encode_pool=self.encode_pool,
                    max_dimension=self.max_dimension,
                    fast_jpeg=self.fast_jpeg,
                ),
                limits=CsvLimits(max_rows=self.max_rows, max_urls_per_row=self.max_urls_per_row),
                api_base_url=self.api_base_url.rstrip("/"),
                webhook_secret=self.webhook_secret,
                retry=self.retry_policy(),
                event_limits=EventLimits(self.webhook_max_products, self.webhook_max_urls),
            )
        return self._ctx


def build_resources(settings: Settings | None = None) -> dict[str, dg.ConfigurableResource]:
    """Resources from the environment. Secrets go through `dg.EnvVar` so the UI never shows them."""
    s = settings or Settings()
    resources: dict[str, dg.ConfigurableResource] = {
        "pipeline": ImagePipelineResource(
            database_url=s.resolved_database_url,
            s3_bucket=s.s3_bucket,
            s3_endpoint_url=s.s3_endpoint_url,
            s3_region=s.s3_region,
            s3_part_size=s.s3_part_size,
            local_objects_dir=str(s.objects_dir),
            public_base_url=s.resolved_public_base_url,
            api_base_url=s.resolved_api_base_url,
            redis_url=s.redis_url,
            webhook_secret=dg.EnvVar("IMGPIPE_WEBHOOK_SECRET") if os.environ.get("IMGPIPE_WEBHOOK_SECRET") else None,
            jpeg_quality=s.jpeg_quality,
            max_image_pixels=s.max_image_pixels,
            fetch_allow=s.fetch_allow,
            fetch_concurrency=s.fetch_concurrency,
            per_host_concurrency=s.per_host_concurrency,
            fetch_connect_timeout=s.fetch_connect_timeout,
            fetch_read_timeout=s.fetch_read_timeout,
            fetch_total_timeout=s.fetch_total_timeout,
            fetch_max_bytes=s.fetch_max_bytes,
            fetch_max_redirects=s.fetch_max_redirects,
            max_rows=s.max_rows,
            max_urls_per_row=s.max_urls_per_row,
            chunk_size=s.chunk_size,
            fanout_threshold=s.fanout_threshold,
            executor=s.executor,
            retry_lookback_hours=s.retry_lookback_hours,
            retry_max_attempts=s.retry_max_attempts,
            retention_days=s.retention_days,
            check_decode_sample=s.check_decode_sample,
            webhook_timeout=s.webhook_timeout,
            webhook_retry_schedule=s.webhook_retry_schedule,
            webhook_retry_jitter=s.webhook_retry_jitter,
            webhook_retry_batch=s.webhook_retry_batch,
            webhook_max_products=s.webhook_max_products,
            webhook_max_urls=s.webhook_max_urls,
            launch_claim_timeout=s.launch_claim_timeout,
            encode_workers=s.encode_workers,
            encode_pool=s.encode_pool,
            max_dimension=s.max_dimension,
            fast_jpeg=s.fast_jpeg,
        )
    }
    if s.executor != "in_process" and s.s3_bucket:
        # Steps on other processes/machines hand each other their (small) outputs through S3.
        from dagster_aws.s3 import S3PickleIOManager

        from image_pipeline.defs.s3_io import SharedClientS3Resource

        resources["io_manager"] = S3PickleIOManager(
            s3_resource=SharedClientS3Resource(endpoint_url=s.s3_endpoint_url, region_name=s.s3_region),
            s3_bucket=s.s3_bucket,
            s3_prefix="dagster-io",
        )
    return resources
