"""What the API needs before it can serve a request, each as a check that raises when it cannot be
reached: the app database, the object store and, when IMGPIPE_REDIS_URL is set, Redis (`GET /readyz`).

Each check bounds itself (the database's connect timeout, one S3 attempt with short timeouts, Redis's
socket timeout), so a dead dependency costs a probe seconds, not a stuck thread.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine, text

from image_pipeline.domain.objects import ObjectStore
from image_pipeline.domain.request.status_cache import StatusCache
from image_pipeline.domain.services import make_store
from image_pipeline.domain.settings import Settings

DATABASE, OBJECTS, REDIS = "database", "objects", "redis"


def ping_database(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def probe_store(settings: Settings) -> ObjectStore:
    """The configured store on a client made for probing (one attempt, `ready_timeout` to connect and read)."""
    if not settings.s3_bucket:
        return make_store(settings)
    from image_pipeline.domain.objects.s3 import probe_s3_client

    client = probe_s3_client(settings.s3_endpoint_url, settings.s3_region, settings.s3_checksum, settings.ready_timeout)
    return make_store(settings, client=client)


def dependency_checks(settings: Settings, engine: Engine, cache: StatusCache) -> dict[str, Callable[[], None]]:
    """name -> check, in the order `/readyz` reports them; Redis only when it is configured."""
    store = probe_store(settings)
    checks: dict[str, Callable[[], None]] = {DATABASE: lambda: ping_database(engine), OBJECTS: store.ping}
    if cache.enabled:
        checks[REDIS] = cache.ping
    return checks
