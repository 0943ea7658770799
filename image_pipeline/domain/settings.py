"""Every setting of the service, read from the environment (``IMGPIPE_*``) in one place."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from image_pipeline.domain.objects.s3 import DEFAULT_PART_SIZE, S3_MIN_PART_SIZE, S3Checksum


class Settings(BaseSettings):
    """Service configuration: `IMGPIPE_<NAME>` in the environment or in `.env` (the environment wins).

    Every limit has a safe default; the README's configuration table lists them. Turned into domain
    objects in one place: `image_pipeline.domain.services` and the `from_settings` of each option object.
    """

    # hide_input_in_errors: a refused value (a weak secret, a key) is never echoed into logs.
    model_config = SettingsConfigDict(
        env_prefix="IMGPIPE_", env_file=".env", env_ignore_empty=True, extra="ignore", hide_input_in_errors=True
    )

    # --- state: database, objects, cache -------------------------------------------------------------
    data_dir: Path = Field(Path(".imgpipe"), description="State of the embedded default (SQLite, objects).")
    database_url: str | None = Field(None, description="App database; default SQLite under data_dir.")
    redis_url: str | None = Field(None, description="Status/progress cache and shared per-host limits; optional.")
    s3_bucket: str | None = Field(None, description="Bucket for inputs and outputs; unset = local directory.")
    s3_endpoint_url: str | None = Field(None, description="S3-compatible endpoint (MinIO, moto); unset = AWS.")
    s3_region: str = "us-east-1"
    s3_part_size: int = Field(
        DEFAULT_PART_SIZE,
        ge=S3_MIN_PART_SIZE,
        description="Part size of streamed S3 uploads (the output CSV, parsed rows): at most about one part "
        "is in memory. S3 requires at least 5 MiB for every part but the last.",
    )
    s3_checksum: S3Checksum = Field(
        "when_supported",
        description="botocore's request_checksum_calculation and response_checksum_validation: "
        "'when_supported' (boto3's default: a CRC32 on every upload, checked on download when the store "
        "sends one) or 'when_required' (only where the S3 API demands one), for S3-compatible stores that "
        "refuse the x-amz-checksum-* headers or aws-chunked trailers boto3 >= 1.36 sends.",
    )
    public_base_url: str | None = Field(
        None, description="Base URL under which stored objects are public (CDN); default: the API's /files/."
    )

    # --- the API ---------------------------------------------------------------------------------------
    api_base_url: str | None = Field(None, description="External URL of the API; default http://127.0.0.1:PORT.")
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    ui_port: int = Field(3000, description="Dagster UI port (make up).")
    api_keys: str = Field("", description="Comma-separated bearer keys accepted by the API.")
    # 16: a random hex key of that length is 64 bits; generated keys (`imgpipe keys create`) are longer.
    api_key_min_chars: int = Field(
        16,
        ge=8,
        description="Shortest key IMGPIPE_API_KEYS may list (a shorter one stops start-up); bearer keys "
        "shorter than this are refused before any lookup.",
    )
    upload_rate_limit: str = Field(
        "60/minute",
        description="Uploads per API key, in `limits` notation ('60/minute', '10/second;500/hour'); 'off' disables.",
    )
    replay_rate_limit: str = Field(
        "10/minute",
        description="Webhook replays per API key (each one makes the service POST to the webhook URL); 'off' disables.",
    )
    cors_origins: str = Field("", description="Comma-separated origins allowed by CORS; empty = CORS off.")
    hsts_seconds: int = Field(31_536_000, ge=0, description="Strict-Transport-Security max-age on https; 0 = off.")
    idempotency_window_hours: float = Field(24.0, gt=0, description="How long an Idempotency-Key is remembered.")
    migrate_on_start: bool = Field(
        True,
        description="The API applies the app database migrations when it starts. Set false where a one-shot "
        "`imgpipe migrate` runs first (compose's migrate service, the Helm hook Job), so replicas never race.",
    )
    ready_timeout: float = Field(
        3.0, gt=0, le=60, description="Seconds /readyz and /api/check_db_connection wait for each dependency."
    )
    dagster_url: str | None = Field(
        None, description="Dagster webserver URL; set = the API launches runs at once (unset = upload sensor only)."
    )
    run_max_runtime: float = Field(
        1800.0, gt=0, description="Seconds a request's run may take (plus run_max_runtime_per_url per URL)."
    )
    run_max_runtime_per_url: float = Field(0.5, ge=0, description="Seconds added to a run's maximum per URL.")
    launch_claim_timeout: float = Field(
        60.0, gt=0, description="Seconds after which an unlaunched claim is re-offered by the upload sensor."
    )
    # --- reconciliation (request_reconcile_sensor): every unfinished request ends in a final state --------
    reconcile_interval: int = Field(15, gt=0, description="Seconds between ticks of the reconciliation sensor.")
    reconcile_batch: int = Field(
        200, gt=0, description="Unfinished requests the reconciliation sensor looks at per tick (it walks them all)."
    )
    run_silence_timeout: float = Field(
        900.0,
        gt=0,
        description="A started run with no event and no progress for this long is taken as dead (its code "
        "location or worker is gone) and marked failed; must exceed a run's longest quiet stretch.",
    )
    run_end_grace: float = Field(
        60.0,
        gt=0,
        description="Seconds after a run ended before the reconciliation sensor finalises its request (the "
        "failure sensor and run retries act first).",
    )
    reconcile_max_relaunches: int = Field(
        1, ge=0, description="Runs the reconciliation sensor launches per request (a lost retry) before failing it."
    )

    # --- what an upload may hold (the API and the pipeline apply the same CsvLimits) ------------------
    max_upload_bytes: int = Field(10 * 1024 * 1024, gt=0)
    max_rows: int = Field(10_000, gt=0)
    max_urls_per_row: int = Field(50, gt=0)
    max_cell_chars: int = Field(20_000, gt=0)
    max_url_chars: int = Field(2048, gt=0)
    max_reported_errors: int = Field(100, gt=0)

    # --- fetching images (and sending webhooks): the SSRF policy and its limits ----------------------
    fetch_allow: str = Field("", description="host:port pairs exempt from the private-address block.")
    fetch_connect_timeout: float = Field(5.0, gt=0)
    fetch_read_timeout: float = Field(15.0, gt=0)
    fetch_total_timeout: float = Field(60.0, gt=0)
    fetch_max_bytes: int = Field(25 * 1024 * 1024, gt=0)
    fetch_max_redirects: int = Field(5, ge=0)
    fetch_concurrency: int = Field(32, gt=0)
    per_host_concurrency: int = Field(8, gt=0)
    store_put_attempts: int = Field(
        3, ge=1, le=10, description="Tries to store one output image (beyond the S3 client's own retries)."
    )
    store_put_backoff: float = Field(1.0, ge=0, le=60, description="Seconds before the second try; doubled each time.")
    host_slot_wait: float = Field(
        120.0, gt=0, description="Seconds a URL may wait for a download slot of its host before it fails (transient)."
    )
    fetch_retries: int = Field(
        3,
        ge=0,
        le=10,
        description="Tries after the first for a download that failed transiently (429, 502, 503, 504, a "
        "timeout, a dropped connection), within the run; 0 = no retry.",
    )
    fetch_retry_backoff: float = Field(
        0.5, ge=0, le=60, description="Seconds: the first retry waits up to this (full jitter), doubled each try."
    )
    fetch_retry_backoff_max: float = Field(
        10.0, ge=0, le=300, description="Seconds: the longest jittered wait between two tries."
    )
    fetch_retry_after_max: float = Field(
        30.0,
        ge=0,
        le=600,
        description="Seconds: the longest Retry-After honoured between two tries (a longer one is cut to this).",
    )

    # --- the codec -----------------------------------------------------------------------------------
    jpeg_quality: int = Field(50, ge=1, le=95)
    max_image_pixels: int = Field(50_000_000, gt=0)
    max_dimension: int | None = Field(None, gt=0, description="Downscale larger images to this longest side.")
    max_jpeg_scans: int = Field(
        32, gt=0, description="JPEGs with more scans are refused before decoding (progressive scan bombs)."
    )
    max_icc_bytes: int = Field(
        4 * 1024 * 1024, gt=0, description="Larger embedded ICC profiles are ignored (the image is read as sRGB)."
    )
    decode_timeout: float = Field(30.0, gt=0, description="Seconds one image may take to decode and encode.")
    fast_jpeg: bool = Field(True, description="JPEG->JPEG with simplejpeg (libjpeg-turbo); false = Pillow only.")
    sync_memory: bool = Field(
        True,
        description="Remember per tenant what each source URL gave and what was made from it: conditional "
        "fetches, reused outputs, content-addressed output URLs (docs/sync.md); false = per-request outputs.",
    )
    score_every: int = Field(
        100,
        ge=0,
        description="Score one URL in this many (the first always) with SSIMULACRA2 against its unencoded "
        "pixels, for the request's evidence; 0 = never. A score costs about 5 encodes of a photo.",
    )
    score_crop: int = Field(256, ge=16, le=2048, description="Side of the centre crop a score looks at (pixels).")
    encode_workers: int = Field(0, ge=0, description="Decode/encode workers per run; 0 = one per CPU core.")
    encode_pool: str = Field(
        "thread", pattern="^(auto|thread|process)$", description="Codec pool: auto = processes for 500+ URLs."
    )

    # --- scale-out (docs/scale-out.md): chunked fan-out and the executor that runs the chunks -------
    chunk_size: int = Field(1000, gt=0, description="URLs per chunk step of compressed_images.")
    fanout_threshold: int = Field(
        1000, gt=0, description="Requests with fewer URLs are one chunk, run in-process whatever `executor` is."
    )
    executor: Literal["in_process", "multiprocess", "celery", "k8s", "ecs", "docker"] = "in_process"
    max_concurrent_chunks: int = Field(0, ge=0, description="Chunk steps per run at once (0 = executor default).")
    celery_broker_url: str = "pyamqp://guest@127.0.0.1//"
    celery_backend_url: str = "rpc://"
    celery_queue: str = Field("dagster", description="Celery queue the chunk steps go to (workers: -q).")
    dagster_pg_url: str | None = Field(None, description="Dagster run/event storage (dagster.yaml reads it).")

    # --- webhooks --------------------------------------------------------------------------------------
    webhook_secret: str | None = Field(
        None,
        description="whsec_... secret (base64 of >= 24 random bytes) that signs the webhooks of tenants "
        "without their own: keys in IMGPIPE_API_KEYS (single-tenant set-ups). Keys from `imgpipe keys "
        "create` get their own secret.",
    )
    webhook_timeout: float = Field(10.0, gt=0)
    webhook_max_response_bytes: int = Field(
        4096, gt=0, description="Of a receiver's answer at most this many bytes are read (asked uncompressed)."
    )
    webhook_max_products: int = Field(
        1000,
        ge=0,
        description="Above this many products the final event lists none (products_omitted); the receiver "
        "fetches output_csv_url instead.",
    )
    webhook_max_urls: int = Field(
        10_000,
        ge=0,
        description="Above this many image URLs the final event lists no products either (bounds the body's size).",
    )
    webhook_retry_schedule: str = Field(
        "5,30,120,600,1800,3600*23",
        description="Seconds to wait before each retry of a webhook (`N*k` repeats N k times); "
        "the number of entries is the number of retries. Default: about 24 h of retries.",
    )
    webhook_retry_jitter: float = Field(0.2, ge=0, le=1, description="Each retry delay is scaled by 1 +/- this.")
    webhook_retry_batch: int = Field(20, gt=0, description="Due deliveries the retry sensor sends per tick.")
    webhook_dns_per_key: int = Field(
        4, gt=0, description="Webhook host lookups at upload still running per API key; more are refused (422)."
    )
    webhook_dns_total: int = Field(64, gt=0, description="The same across all keys (bounds stuck lookup threads).")

    # --- schedules and asset checks -----------------------------------------------------------------
    retry_schedule_cron: str = Field("15 * * * *", description="When 'retry failed images' runs.")
    retry_lookback_hours: int = Field(24, gt=0, description="Requests finished this recently are retried.")
    retry_max_attempts: int = Field(3, ge=0, description="Retry runs per request at most.")
    retention_days: int | None = Field(None, gt=0, description="Delete requests older than this; unset = keep.")
    retention_schedule_cron: str = Field("30 3 * * *", description="When the retention schedule runs.")
    check_decode_sample: int = Field(200, gt=0, description="Outputs decoded by the JPEG asset check per request.")

    # --- observability (docs/observability.md) ---------------------------------------------------------
    # Metrics need no setting of ours: prometheus_client reads PROMETHEUS_MULTIPROC_DIR, and tracing is
    # the standard OTEL_* variables, read by the OpenTelemetry SDK (image_pipeline/domain/telemetry).
    log_format: Literal["text", "json"] = Field(
        "text",
        description="'json': one JSON object per log line with request_id, run_id and tenant where known "
        "(the API and runs); 'text': Python's and uvicorn's plain lines, as today.",
    )

    # --- the imgpipe CLI -------------------------------------------------------------------------------
    api_url: str | None = Field(None, description="API the imgpipe CLI talks to; default the API's own base URL.")
    api_key: str | None = Field(None, description="Bearer key the imgpipe CLI sends.")

    @field_validator("upload_rate_limit", "replay_rate_limit")
    @classmethod
    def _valid_rate_limit(cls, v: str) -> str:
        v = v.strip()
        if v.lower() not in ("", "off", "0"):
            from limits import parse_many

            parse_many(v)  # raises ValueError on a malformed limit
        return v

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _check_schedule(cls, v: str) -> str:
        parse_retry_schedule(v)
        return v.strip()

    @field_validator("webhook_secret")
    @classmethod
    def _check_webhook_secret(cls, v: str | None) -> str | None:
        from image_pipeline.domain.signing_secrets import check_secret

        return check_secret(v, "IMGPIPE_WEBHOOK_SECRET") if v else None

    @field_validator("api_keys")
    @classmethod
    def _no_placeholder_keys(cls, v: str) -> str:
        from image_pipeline.domain.signing_secrets import PLACEHOLDERS

        for i, key in enumerate(k.strip() for k in v.split(",")):
            if key and any(p in key.lower() for p in PLACEHOLDERS):
                raise ValueError(f"IMGPIPE_API_KEYS entry {i + 1} looks like a placeholder; generate a key")
        return v

    @field_validator("api_keys", "fetch_allow")
    @classmethod
    def _strip(cls, v: str) -> str:
        return v.strip()

    @model_validator(mode="after")
    def _keys_long_enough(self) -> Settings:
        for n, key in enumerate(self.api_key_list, 1):
            if len(key) < self.api_key_min_chars:  # the key itself stays out of the message
                raise ValueError(
                    f"IMGPIPE_API_KEYS entry {n} has {len(key)} characters; keys need at least "
                    f"{self.api_key_min_chars} (IMGPIPE_API_KEY_MIN_CHARS); make one with `imgpipe keys create`"
                )
        return self

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip().rstrip("/") for o in self.cors_origins.split(",") if o.strip()]

    @property
    def api_key_list(self) -> list[str]:
        return [k.strip() for k in self.api_keys.split(",") if k.strip()]

    @property
    def fetch_allow_set(self) -> frozenset[tuple[str, int]]:
        return parse_allow(self.fetch_allow)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'app.db').resolve()}"

    @property
    def objects_dir(self) -> Path:
        """Where objects live when no bucket is configured."""
        return (self.data_dir / "objects").resolve()

    @property
    def resolved_api_base_url(self) -> str:
        return (self.api_base_url or f"http://{self.api_host}:{self.api_port}").rstrip("/")

    @property
    def resolved_api_url(self) -> str:
        """Where the CLI sends its requests."""
        return (self.api_url or self.resolved_api_base_url).rstrip("/")

    @property
    def resolved_public_base_url(self) -> str:
        return (self.public_base_url or f"{self.resolved_api_base_url}/files").rstrip("/")


def parse_allow(value: str) -> frozenset[tuple[str, int]]:
    """`host:port,[::1]:port` -> {(host, port)}: the exact pairs exempt from the private-address block."""
    pairs = set()
    for item in value.split(","):
        item = item.strip()
        if item:
            host, _, port = item.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"IMGPIPE_FETCH_ALLOW entry {item!r} must be host:port")
            pairs.add((host.strip("[]").lower(), int(port)))
    return frozenset(pairs)


def parse_retry_schedule(value: str) -> list[float]:
    """`"5,30,120*2"` -> [5, 30, 120, 120]: the delay before each retry, in seconds (empty = no retries)."""
    delays: list[float] = []
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        seconds, _, times = item.partition("*")
        try:
            delay, count = float(seconds), int(times or 1)
        except ValueError as exc:
            raise ValueError(f"IMGPIPE_WEBHOOK_RETRY_SCHEDULE entry {item!r} must be seconds or seconds*count") from exc
        if delay < 0 or count < 1 or count > 1000:
            raise ValueError(f"IMGPIPE_WEBHOOK_RETRY_SCHEDULE entry {item!r} is out of range")
        delays += [delay] * count
    return delays


@functools.lru_cache
def get_settings() -> Settings:
    """The process's settings (cached; tests build `Settings(...)` directly instead)."""
    return Settings()
