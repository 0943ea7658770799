"""Names the API and the Dagster definitions share: jobs, the partitions, the sensor, the chunk pool, run
tags, and the fan-out rule that picks a request's job. Both sides import them from here, so they cannot
drift apart (the API launches runs by name over GraphQL and never imports Dagster)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from image_pipeline.domain.settings import Settings

JOB_NAME = "process_request_job"  # every request below the fan-out threshold: one process, in-process steps
FANOUT_JOB_NAME = "process_request_fanout_job"  # large requests: chunk steps on the configured executor
PARTITIONS_DEF_NAME = "requests"  # one dynamic partition per request; the key is the request_id
SENSOR_NAME = "upload_sensor"
RECONCILE_SENSOR_NAME = "request_reconcile_sensor"
CHUNK_POOL = "image_chunks"  # the Dagster pool of chunk steps (its limit: dagster.yaml `pools`)

# Run tags
PARTITION_TAG = "dagster/partition"
REQUEST_ID_TAG = "imgpipe/request_id"
OWNER_TAG = "imgpipe/owner"
ROWS_TAG = "imgpipe/rows"
URLS_TAG = "imgpipe/urls"
TRIGGER_TAG = "imgpipe/trigger"  # "retry", "retention" (schedules) or "reconcile" (reconciliation sensor)
RETRY_TAG = "imgpipe/retry_attempt"
LAUNCHED_BY_TAG = "imgpipe/launched_by"
# The W3C traceparent of the upload's span (API fast path): the run's spans join the upload's trace.
TRACEPARENT_TAG = "imgpipe/traceparent"
# Set by the reconciliation sensor on a failed run whose promised retry never came (with
# dagster/will_retry=false, so Dagster's retry daemon leaves it alone): when it took the retry over.
RETRY_WITHDRAWN_TAG = "imgpipe/retry_withdrawn_at"
# Dagster's run monitoring (enabled in every dagster.yaml here) fails a run older than this many seconds.
MAX_RUNTIME_TAG = "dagster/max_runtime"
DEFAULT_RUN_MAX_RUNTIME = 1800.0  # IMGPIPE_RUN_MAX_RUNTIME: seconds every run may take...
DEFAULT_RUN_MAX_RUNTIME_PER_URL = 0.5  # ...IMGPIPE_RUN_MAX_RUNTIME_PER_URL: plus this much per image URL


def max_runtime_for(urls: int, settings: Settings | None = None) -> int:
    """Seconds a run of a request of `urls` image URLs may take before Dagster fails it."""
    base = settings.run_max_runtime if settings else DEFAULT_RUN_MAX_RUNTIME
    per_url = settings.run_max_runtime_per_url if settings else DEFAULT_RUN_MAX_RUNTIME_PER_URL
    return int(base + per_url * urls)


def run_tags(request_id: str, owner: str, rows: int, urls: int, settings: Settings | None = None) -> dict[str, str]:
    """The request's own tags on its run (the sensor adds the dagster/* ones itself), and its maximum
    runtime (`settings`' limits; the defaults without them)."""
    return {
        REQUEST_ID_TAG: request_id,
        OWNER_TAG: owner,
        ROWS_TAG: str(rows),
        URLS_TAG: str(urls),
        MAX_RUNTIME_TAG: str(max_runtime_for(urls, settings)),
    }


def fast_path_tags(
    request_id: str, owner: str, rows: int, urls: int, settings: Settings | None = None
) -> dict[str, str]:
    """What a sensor-launched run of this request carries, so the sensor recognises it as its own."""
    return {
        **run_tags(request_id, owner, rows, urls, settings),
        PARTITION_TAG: request_id,
        "dagster/run_key": request_id,
        "dagster/sensor_name": SENSOR_NAME,
        LAUNCHED_BY_TAG: "api",
    }


def uses_fanout(settings: Settings, url_count: int) -> bool:
    """Small requests run in-process (lowest latency); large ones on the configured executor."""
    return settings.executor != "in_process" and url_count >= settings.fanout_threshold


def job_name_for(settings: Settings, url_count: int) -> str:
    return FANOUT_JOB_NAME if uses_fanout(settings, url_count) else JOB_NAME
