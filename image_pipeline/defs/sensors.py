"""upload_sensor launches one run per accepted upload; request_failure_sensor tells the caller when a
run dies before it could (so the caller always hears back)."""

import dagster as dg

from image_pipeline.defs.jobs import REQUEST_JOBS
from image_pipeline.defs.partitions import request_partitions_def
from image_pipeline.defs.resources import ImagePipelineResource

SENSOR_BATCH = 500


def run_tags(request_id: str, owner: str, rows: int, urls: int) -> dict[str, str]:
    return {
        "imgpipe/request_id": request_id,
        "imgpipe/owner": owner,
        "imgpipe/rows": str(rows),
        "imgpipe/urls": str(urls),
    }


@dg.sensor(jobs=REQUEST_JOBS, minimum_interval_seconds=1, default_status=dg.DefaultSensorStatus.RUNNING)
def upload_sensor(context: dg.SensorEvaluationContext, pipeline: ImagePipelineResource) -> dg.SensorResult:
    """New uploads -> a dynamic partition each + one run each (`run_key` = request_id, so never twice).

    Reads the indexed `status = 'pending'` slice of the request table, oldest first, not a bucket
    listing. A request stays pending until its run starts, so one whose run was already requested
    is offered again and skipped by Dagster's run-key check; this also catches rows whose
    transaction committed after a younger one (a plain `seq > cursor` would miss those).
    """
    from image_pipeline.store.requests import pending_requests

    ctx = pipeline.context()
    with ctx.sessions() as s:
        pending = pending_requests(s, SENSOR_BATCH)
    if not pending:
        return dg.SensorResult(skip_reason=dg.SkipReason("no pending uploads"))
    keys = [r.id for r in pending]
    new_keys = [k for k in keys if not context.instance.has_dynamic_partition(request_partitions_def.name, k)]
    last_seq = max(r.seq for r in pending)
    cursor = str(max(last_seq, int(context.cursor or 0)))
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                partition_key=r.id,
                run_key=r.id,
                job_name=pipeline.job_for(r.url_count),
                tags=run_tags(r.id, r.owner, r.row_count, r.url_count),
            )
            for r in pending
        ],
        dynamic_partitions_requests=[request_partitions_def.build_add_request(new_keys)] if new_keys else [],
        cursor=cursor,
    )


@dg.run_failure_sensor(
    monitored_jobs=REQUEST_JOBS, default_status=dg.DefaultSensorStatus.RUNNING, minimum_interval_seconds=1
)
def request_failure_sensor(context: dg.RunFailureSensorContext, pipeline: ImagePipelineResource) -> None:
    """A run failed: mark its request failed with the reason and send the final webhook (once)."""
    from image_pipeline.pipeline import fail_request

    request_id = context.dagster_run.tags.get("dagster/partition")
    if not request_id:
        return
    reason = context.failure_event.message or "the processing run failed"
    fail_request(pipeline.context(), request_id, f"processing failed: {reason}")
