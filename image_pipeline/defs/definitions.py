"""The only place the Dagster `Definitions` are built (workspace.yaml and `dagster dev -m` load this)."""

import dagster as dg

from image_pipeline.defs.assets import request_assets
from image_pipeline.defs.jobs import REQUEST_JOBS
from image_pipeline.defs.resources import build_resources
from image_pipeline.defs.schedules import build_schedules, purge_expired_job
from image_pipeline.defs.sensors import request_failure_sensor, upload_sensor, webhook_retry_sensor

defs = dg.Definitions(
    assets=request_assets,
    jobs=[*REQUEST_JOBS, purge_expired_job],
    schedules=build_schedules(),
    sensors=[upload_sensor, request_failure_sensor, webhook_retry_sensor],
    resources=build_resources(),
)
