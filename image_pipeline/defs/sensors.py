"""upload_sensor launches one run per accepted upload; request_failure_sensor tells the caller when a
run dies before it could (so the caller always hears back)."""

import dagster as dg

from image_pipeline.defs.jobs import process_request_job
from image_pipeline.defs.partitions import request_partitions_def
from image_pipeline.defs.resources import ImagePipelineResource
from image_pipeline.launch import SENSOR_NAME, run_tags

SENSOR_BATCH = 500


@dg.sensor(
    name=SENSOR_NAME,
    job=process_request_job,
    minimum_interval_seconds=1,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def upload_sensor(context: dg.SensorEvaluationContext, pipeline: ImagePipelineResource) -> dg.SensorResult:
    """New uploads -> a dynamic partition each + one run each (`run_key` = request_id, so never twice).

    Reads the indexed `status = 'pending'` slice of the request table, oldest first, not a bucket
    listing (this also catches rows whose transaction committed after a younger one, which a plain
    `seq > cursor` would miss). Each pending request is claimed first (`claim_launches`): one the API's
    fast path already claimed is left alone, unless that claim went stale (`launch_claim_timeout`),
    in which case it is offered again and Dagster's run-key check skips it if its run exists.
    """
    from image_pipeline.store.requests import claim_launches, pending_requests

    ctx = pipeline.context()
    with ctx.sessions() as s:
        pending = pending_requests(s, SENSOR_BATCH)
        won = set(claim_launches(s, [r.id for r in pending], pipeline.launch_claim_timeout)) if pending else set()
    if not pending:
        return dg.SensorResult(skip_reason=dg.SkipReason("no pending uploads"))
    last_seq = max(r.seq for r in pending)
    cursor = str(max(last_seq, int(context.cursor or 0)))
    pending = [r for r in pending if r.id in won]
    if not pending:
        skip = dg.SkipReason("every pending upload is being launched by the API")
        return dg.SensorResult(skip_reason=skip, cursor=cursor)
    keys = [r.id for r in pending]
    new_keys = [k for k in keys if not context.instance.has_dynamic_partition(request_partitions_def.name, k)]
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(partition_key=r.id, run_key=r.id, tags=run_tags(r.id, r.owner, r.row_count, r.url_count))
            for r in pending
        ],
        dynamic_partitions_requests=[request_partitions_def.build_add_request(new_keys)] if new_keys else [],
        cursor=cursor,
    )


@dg.run_failure_sensor(
    monitored_jobs=[process_request_job], default_status=dg.DefaultSensorStatus.RUNNING, minimum_interval_seconds=1
)
def request_failure_sensor(context: dg.RunFailureSensorContext, pipeline: ImagePipelineResource) -> None:
    """A run failed: mark its request failed with the reason and send the final webhook (once)."""
    from image_pipeline.pipeline import fail_request

    request_id = context.dagster_run.tags.get("dagster/partition")
    if not request_id:
        return
    reason = context.failure_event.message or "the processing run failed"
    fail_request(pipeline.context(), request_id, f"processing failed: {reason}")
