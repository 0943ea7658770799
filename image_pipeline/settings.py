"""Every setting of the service, read from the environment (``IMGPIPE_*``) in one place."""

from __future__ import annotations

import functools
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Service configuration. Every limit has a safe default; see the README's configuration table."""

    model_config = SettingsConfigDict(env_prefix="IMGPIPE_", env_file=".env", env_ignore_empty=True, extra="ignore")

    data_dir: Path = Field(Path(".imgpipe"), description="State of the embedded default (SQLite, objects).")
    database_url: str | None = Field(None, description="App database; default SQLite under data_dir.")
    redis_url: str | None = Field(None, description="Status/progress cache; optional.")

    s3_bucket: str | None = Field(None, description="Bucket for inputs and outputs; unset = local directory.")
    s3_endpoint_url: str | None = Field(None, description="S3-compatible endpoint (MinIO, moto); unset = AWS.")
    s3_region: str = "us-east-1"
    public_base_url: str | None = Field(
        None, description="Base URL under which stored objects are public (CDN); default: the API's /files/."
    )
    api_base_url: str | None = Field(None, description="External URL of the API; default http://127.0.0.1:PORT.")

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    ui_port: int = Field(3000, description="Dagster UI port (make up).")
    api_keys: str = Field("", description="Comma-separated bearer keys accepted by the API.")

    jpeg_quality: int = Field(50, ge=1, le=95)
    max_upload_bytes: int = Field(10 * 1024 * 1024, gt=0)
    max_rows: int = Field(10_000, gt=0)
    max_urls_per_row: int = Field(50, gt=0)
    max_cell_chars: int = Field(20_000, gt=0)
    max_url_chars: int = Field(2048, gt=0)
    max_reported_errors: int = Field(100, gt=0)

    fetch_allow: str = Field("", description="host:port pairs exempt from the private-address block.")
    fetch_connect_timeout: float = Field(5.0, gt=0)
    fetch_read_timeout: float = Field(15.0, gt=0)
    fetch_total_timeout: float = Field(60.0, gt=0)
    fetch_max_bytes: int = Field(25 * 1024 * 1024, gt=0)
    fetch_max_redirects: int = Field(5, ge=0)
    fetch_concurrency: int = Field(32, gt=0)
    per_host_concurrency: int = Field(8, gt=0)
    max_image_pixels: int = Field(50_000_000, gt=0)

    webhook_secret: str | None = Field(None, description="whsec_... secret used to sign webhooks.")
    webhook_timeout: float = Field(10.0, gt=0)

    # --- Performance: run launch fast path and codec (issue 9) ---
    dagster_url: str | None = Field(
        None, description="Dagster webserver URL; set = the API launches runs at once (unset = upload sensor only)."
    )
    launch_claim_timeout: float = Field(
        60.0, gt=0, description="Seconds after which an unlaunched claim is re-offered by the upload sensor."
    )
    encode_workers: int = Field(0, ge=0, description="Decode/encode workers per run; 0 = one per CPU core.")
    encode_pool: str = Field(
        "thread", pattern="^(auto|thread|process)$", description="Codec pool: auto = processes for 500+ URLs."
    )
    max_dimension: int | None = Field(None, gt=0, description="Downscale larger images to this longest side.")
    fast_jpeg: bool = Field(True, description="JPEG->JPEG with simplejpeg (libjpeg-turbo); false = Pillow only.")

    @field_validator("api_keys", "fetch_allow")
    @classmethod
    def _strip(cls, v: str) -> str:
        return v.strip()

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


@functools.lru_cache
def get_settings() -> Settings:
    """The process's settings (cached; tests build `Settings(...)` directly instead)."""
    return Settings()
