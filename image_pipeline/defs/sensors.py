"""upload_sensor launches one run per accepted upload; request_failure_sensor tells the caller when a
run dies before it could (so the caller always hears back); webhook_retry_sensor re-sends webhooks
whose retry time has come (the schedule lives in the database, so it survives restarts)."""

import dagster as dg
from dagster._core.storage.tags import WILL_RETRY_TAG

from image_pipeline.defs import jobs
from image_pipeline.defs.partitions import request_partitions_def
from image_pipeline.defs.resources import PipelineParam
from image_pipeline.domain.runs import PARTITION_TAG, SENSOR_NAME, job_name_for, run_tags

SENSOR_BATCH = 500


@dg.sensor(
    name=SENSOR_NAME,
    jobs=jobs.REQUEST_JOBS,
    minimum_interval_seconds=1,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def upload_sensor(context: dg.SensorEvaluationContext, pipeline: PipelineParam) -> dg.SensorResult:
    """New uploads -> a dynamic partition each + one run each (`run_key` = request_id, so never twice).

    Reads the indexed `status = 'pending'` slice of the request table, oldest first, not a bucket
    listing (this also catches rows whose transaction committed after a younger one, which a plain
    `seq > cursor` would miss). Each pending request is claimed first (`claim_launches`): one the API's
    fast path already claimed is left alone, unless that claim went stale (`launch_claim_timeout`),
    in which case it is offered again and Dagster's run-key check skips it if its run exists.
    """
    from image_pipeline.domain.db.requests import claim_launches, pending_requests

    ctx, timeout = pipeline.context(), pipeline.settings.launch_claim_timeout
    with ctx.sessions() as s:
        pending = pending_requests(s, SENSOR_BATCH)
        won = set(claim_launches(s, [r.id for r in pending], timeout)) if pending else set()
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
            dg.RunRequest(
                partition_key=r.id,
                run_key=r.id,
                job_name=job_name_for(pipeline.settings, r.url_count),
                tags=run_tags(r.id, r.owner, r.row_count, r.url_count, pipeline.settings),
            )
            for r in pending
        ],
        dynamic_partitions_requests=[request_partitions_def.build_add_request(new_keys)] if new_keys else [],
        cursor=cursor,
    )


@dg.run_failure_sensor(
    monitored_jobs=jobs.REQUEST_JOBS, default_status=dg.DefaultSensorStatus.RUNNING, minimum_interval_seconds=1
)
def request_failure_sensor(context: dg.RunFailureSensorContext, pipeline: PipelineParam) -> None:
    """A run failed: mark its request failed with the reason and send the final webhook (once)."""
    from image_pipeline.domain.request.finish import fail_request

    request_id = context.dagster_run.tags.get(PARTITION_TAG)
    if not request_id:
        return
    run = context.instance.get_run_by_id(context.dagster_run.run_id) or context.dagster_run
    if run.tags.get(WILL_RETRY_TAG) == "true":
        # Run retries (dagster.yaml `run_retries`) will start this request again, e.g. after its worker was
        # killed: the caller hears about the request when the retry ends, not now.
        context.log.info(f"run {run.run_id} of {request_id} failed and will be retried; not failing the request")
        return
    reason = context.failure_event.message or "the processing run failed"
    fail_request(pipeline.context(), request_id, f"processing failed: {reason}")


@dg.sensor(minimum_interval_seconds=2, default_status=dg.DefaultSensorStatus.RUNNING)
def webhook_retry_sensor(context: dg.SensorEvaluationContext, pipeline: PipelineParam) -> dg.SkipReason:
    """Send due webhook retries (at most `IMGPIPE_WEBHOOK_RETRY_BATCH` per tick, concurrently).

    It launches no runs: a delivery is one HTTP POST, and its attempt is logged in the app database
    (`GET /api/requests/{id}/webhooks`). A tick takes at most about one webhook timeout.
    """
    from image_pipeline.domain.images.url_policy import FetchPolicy
    from image_pipeline.domain.services import make_sessions
    from image_pipeline.domain.webhooks.delivery import RetryPolicy, send_due

    # Only the database is needed (no object store or cache clients): this runs every 2 s, on this
    # process's shared engine rather than a connection opened and closed per tick.
    settings = pipeline.settings
    sent = send_due(
        make_sessions(settings),
        secret=settings.webhook_secret,
        fetch_policy=FetchPolicy.from_settings(settings),
        policy=RetryPolicy.from_settings(settings),
        limit=settings.webhook_retry_batch,
    )
    if not sent:
        return dg.SkipReason("no webhook deliveries due")
    for s in sent:
        context.log.info(
            f"delivery {s.delivery_id}: {s.attempt.status_code or s.attempt.error} -> {s.state}"
            f" ({s.attempt.duration_ms} ms)"
        )
    states = [s.state for s in sent]
    summary = ", ".join(f"{x}={states.count(x)}" for x in sorted(set(states)))
    return dg.SkipReason(f"sent {len(sent)} webhook deliveries: {summary}")
