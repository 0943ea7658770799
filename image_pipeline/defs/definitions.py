"""The only place the Dagster `Definitions` are built (workspace.yaml and `dagster dev -m` load this)."""

import dagster as dg

from image_pipeline.defs.assets import request_assets
from image_pipeline.defs.jobs import process_request_job
from image_pipeline.defs.resources import build_resources
from image_pipeline.defs.sensors import request_failure_sensor, upload_sensor, webhook_retry_sensor

defs = dg.Definitions(
    assets=request_assets,
    jobs=[process_request_job],
    sensors=[upload_sensor, request_failure_sensor, webhook_retry_sensor],
    resources=build_resources(),
)
