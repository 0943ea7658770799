"""The service's Prometheus metrics: every instrument defined once, and the calls that record them.

Multiprocess-safe through prometheus_client's multiprocess mode: when `PROMETHEUS_MULTIPROC_DIR` is
set (`make up` sets it; it is read by prometheus_client itself, at import), every process - the API,
each Dagster run worker, a spawned codec process - writes its samples to memory-mapped files in that
directory, and the API's `/metrics` adds them up (`exposition`). Without it each process counts for
itself and `/metrics` shows the API process alone (docs/observability.md).

No label carries a tenant, a request id or a URL: label values are small fixed sets, so the number of
series stays bounded whatever the traffic.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from time import perf_counter
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from image_pipeline.domain.db.requests import UrlResult

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
STAGES = ("fetch", "decode", "encode", "store")

# Per-image stages: a cached local fetch takes about a millisecond, a large decode tens of seconds.
_STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# Upload to final status: seconds for a small request, hours for the largest.
_REQUEST_BUCKETS = (1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600)

UPLOADS = Counter("imgpipe_uploads", "Uploads answered, by outcome: accepted or why refused.", ["outcome"])
IMAGES = Counter(
    "imgpipe_images",
    "Image URLs processed, by status (done, failed) and failure class (none when done).",
    ["status", "failure_class"],
)
IMAGE_BYTES = Counter(
    "imgpipe_image_bytes", "Image bytes downloaded (in) and stored (out), of URLs done.", ["direction"]
)
STAGE_SECONDS = Histogram(
    "imgpipe_stage_seconds", "Seconds one image spends in a stage.", ["stage"], buckets=_STAGE_BUCKETS
)
REQUEST_SECONDS = Histogram(
    "imgpipe_request_duration_seconds",
    "Seconds from upload to the final status of a request.",
    ["status"],
    buckets=_REQUEST_BUCKETS,
)
HTTP_SECONDS = Histogram(
    "imgpipe_http_request_duration_seconds", "API requests: seconds to answer.", ["method", "route", "status"]
)
WEBHOOK_ATTEMPTS = Counter("imgpipe_webhook_attempts", "Webhook delivery attempts, by outcome.", ["outcome"])

# Children looked up once: recording a stage is then one histogram observe (see docs/observability.md).
_STAGE = {s: STAGE_SECONDS.labels(s) for s in STAGES}
_BYTES_IN, _BYTES_OUT = IMAGE_BYTES.labels("in"), IMAGE_BYTES.labels("out")


@contextmanager
def timed(stage: str) -> Iterator[None]:
    """Observe the seconds the block takes in `imgpipe_stage_seconds{stage=...}`, failed or not."""
    start = perf_counter()
    try:
        yield
    finally:
        _STAGE[stage].observe(perf_counter() - start)


def failure_class(result: UrlResult) -> str:
    """A failed URL's class as the pipeline recorded it (`images.failures.classify_failure`)."""
    return result.failure_class or "internal"


def record_result(result: UrlResult) -> None:
    """One URL's outcome: counted by status and failure class; a done URL's bytes in and out."""
    if result.status == "done":
        IMAGES.labels("done", "none").inc()
        _BYTES_IN.inc(result.bytes_in or 0)
        _BYTES_OUT.inc(result.bytes_out or 0)
    else:
        IMAGES.labels("failed", failure_class(result)).inc()


def record_upload(outcome: str) -> None:
    UPLOADS.labels(outcome).inc()


def record_request_end(status: str, seconds: float) -> None:
    REQUEST_SECONDS.labels(status).observe(max(0.0, seconds))


def record_webhook_attempt(outcome: str) -> None:
    WEBHOOK_ATTEMPTS.labels(outcome).inc()


def record_http(method: str, route: str, status: int, seconds: float) -> None:
    HTTP_SECONDS.labels(method, route, str(status)).observe(seconds)


# --- the scrape ------------------------------------------------------------------------------------------
def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def reset_multiprocess_dir(path: str | os.PathLike) -> int:
    """Empty a deployment's shared metrics directory before its processes start, as prometheus_client's
    multiprocess mode requires (files of processes gone since would keep adding their old counts to
    the new ones); made if missing. The number of files removed."""
    from pathlib import Path

    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    old = list(root.glob("*.db"))
    for f in old:
        f.unlink()
    return len(old)


def exposition(extra: Iterable[Collector] = ()) -> bytes:
    """The text a scrape gets: every process's samples (multiprocess mode) or this process's, plus
    `extra` collectors evaluated now (the database gauges)."""
    path = multiprocess_dir()
    if path:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path)
        base = generate_latest(registry)
    else:
        base = generate_latest(REGISTRY)
    now = CollectorRegistry()
    for collector in extra:
        now.register(collector)
    return base + generate_latest(now)
