"""upload_sensor launches one run per accepted upload; request_failure_sensor tells the caller when a
run dies before it could (so the caller always hears back); request_reconcile_sensor finalises every
request whose run ended, or stopped, without doing so (cancelled, orphaned, a lost retry);
webhook_retry_sensor re-sends webhooks whose retry time has come (the schedule lives in the database,
so it survives restarts)."""

import dagster as dg
from dagster._core.storage.tags import AUTO_RETRY_RUN_ID_TAG, WILL_RETRY_TAG

from image_pipeline.defs import jobs
from image_pipeline.defs.partitions import request_partitions_def
from image_pipeline.defs.resources import PipelineParam
from image_pipeline.domain.runs import (
    PARTITION_TAG,
    RECONCILE_SENSOR_NAME,
    REQUEST_ID_TAG,
    RETRY_WITHDRAWN_TAG,
    SENSOR_NAME,
    TRIGGER_TAG,
    job_name_for,
    run_tags,
)
from image_pipeline.domain.settings import get_settings

SENSOR_BATCH = 500


@dg.sensor(
    name=SENSOR_NAME,
    jobs=jobs.REQUEST_JOBS,
    minimum_interval_seconds=1,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def upload_sensor(context: dg.SensorEvaluationContext, pipeline: PipelineParam) -> dg.SensorResult:
    """New uploads -> a dynamic partition each + one run each (`run_key` = request_id, so never twice).

    Reads the indexed `status = 'pending'` slice of the request table, oldest first, skipping requests
    whose claim is fresh (so however many are being launched or wait in the run queue, the batch is
    made of requests that can be launched now), not a bucket listing (this also catches rows whose
    transaction committed after a younger one, which a plain `seq > cursor` would miss). Each pending
    request is claimed first (`claim_launches`): one the API's fast path already claimed is left
    alone, unless that claim went stale (`launch_claim_timeout`), in which case it is offered again
    and Dagster's run-key check skips it if its run exists.
    """
    from image_pipeline.domain.db.requests import claim_launches, pending_requests

    ctx, timeout = pipeline.context(), pipeline.settings.launch_claim_timeout
    with ctx.sessions() as s:
        pending = pending_requests(s, SENSOR_BATCH, claimable_after_s=timeout)
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
    if run.tags.get(WILL_RETRY_TAG) == "true" or RETRY_WITHDRAWN_TAG in run.tags:
        # Run retries (dagster.yaml `run_retries`) will start this request again, e.g. after its worker was
        # killed, or the reconciliation sensor took over a retry that did not come (will_retry is then
        # false, and this sensor may see the failure only now): the caller hears when that run ends.
        context.log.info(f"run {run.run_id} of {request_id} failed and will be retried; not failing the request")
        return
    reason = context.failure_event.message or "the processing run failed"
    fail_request(pipeline.context(), request_id, f"processing failed: {reason}")


def _latest_run(instance: dg.DagsterInstance, request_id: str):  # -> (DagsterRun, RunFacts) | None
    """The newest run of a request's partition, described for `reconcile.decide`."""
    from datetime import UTC, datetime

    from image_pipeline.domain.request.reconcile import LIVE, RunFacts

    records = instance.get_run_records(dg.RunsFilter(tags={PARTITION_TAG: request_id}), limit=1)
    if not records:
        return None
    rec = records[0]
    run = rec.dagster_run
    last_event_at = None
    if run.status.value in LIVE:  # only a live run's silence matters: one indexed query, newest event
        events = instance.get_records_for_run(run.run_id, ascending=False, limit=1).records
        if events:
            last_event_at = datetime.fromtimestamp(events[0].event_log_entry.timestamp, UTC)
    withdrawn = run.tags.get(RETRY_WITHDRAWN_TAG)
    facts = RunFacts(
        run_id=run.run_id,
        status=run.status.value,
        created_at=rec.create_timestamp,
        ended_at=datetime.fromtimestamp(rec.end_time, UTC) if rec.end_time else None,
        last_event_at=last_event_at,
        will_retry=run.tags.get(WILL_RETRY_TAG),
        retried_by=run.tags.get(AUTO_RETRY_RUN_ID_TAG),
        retry_withdrawn_at=datetime.fromisoformat(withdrawn) if withdrawn else None,
    )
    return run, facts


def _free_pool_slots(context: dg.SensorEvaluationContext, run_id: str) -> None:
    """Give back the chunk-pool slots a dead run's steps still hold (run monitoring does it too, later)."""
    try:
        context.instance.event_log_storage.free_concurrency_slots_for_run(run_id)
    except Exception as exc:  # not every storage supports pools; slots also expire with run monitoring
        context.log.warning(f"could not free the pool slots of run {run_id}: {exc}")


@dg.sensor(
    name=RECONCILE_SENSOR_NAME,
    jobs=jobs.REQUEST_JOBS,
    minimum_interval_seconds=get_settings().reconcile_interval,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def request_reconcile_sensor(context: dg.SensorEvaluationContext, pipeline: PipelineParam) -> dg.SensorResult:
    """Every pending/processing request whose latest run ended, was cancelled, or went silent ends in a
    final state: the dead run is marked failed (run retries may then re-run it), a lost retry is
    withdrawn from Dagster and then re-launched (at most `IMGPIPE_RECONCILE_MAX_RELAUNCHES` times), and
    otherwise the request is failed with its final webhook (`domain.request.reconcile.decide` has the rules).

    Walks every unfinished request, `IMGPIPE_RECONCILE_BATCH` per tick, by `seq` from its cursor and
    round again, so a large backlog cannot hide the newest ones.
    """
    from image_pipeline.domain.clock import utcnow
    from image_pipeline.domain.db.requests import unfinished_requests
    from image_pipeline.domain.request.finish import fail_request
    from image_pipeline.domain.request.reconcile import Bounds, decide

    settings, instance = pipeline.settings, context.instance
    after = int(context.cursor or 0)
    ctx = pipeline.context()
    with ctx.sessions() as s:
        batch = unfinished_requests(s, after, settings.reconcile_batch)
        for r in batch:
            s.expunge(r)
    cursor = str(batch[-1].seq) if len(batch) == settings.reconcile_batch else "0"
    bounds, now = Bounds.from_settings(settings), utcnow()
    run_requests, new_partitions, done = [], [], []
    for req in batch:
        latest = _latest_run(instance, req.id)
        run, facts = latest if latest else (None, None)
        relaunches = instance.get_runs_count(dg.RunsFilter(tags={REQUEST_ID_TAG: req.id, TRIGGER_TAG: "reconcile"}))
        action = decide(req.status, req.updated_at, facts, relaunches, now, bounds)
        if action.kind == "wait":
            continue
        context.log.info(f"request {req.id} ({req.status}): {action.kind}: {action.reason}")
        done.append(f"{req.id}={action.kind}")
        if action.kind == "fail_run":
            instance.report_run_failed(run, action.reason)
            _free_pool_slots(context, run.run_id)
        elif action.kind == "withdraw_retry":
            instance.add_run_tags(run.run_id, {WILL_RETRY_TAG: "false", RETRY_WITHDRAWN_TAG: now.isoformat()})
        elif action.kind == "fail_request":
            if run is not None:
                _free_pool_slots(context, run.run_id)
            fail_request(ctx, req.id, action.reason)
        elif action.kind == "relaunch":
            if not instance.has_dynamic_partition(request_partitions_def.name, req.id):
                new_partitions.append(req.id)
            tags = run_tags(req.id, req.owner, req.row_count, req.url_count, pipeline.settings)
            tags[TRIGGER_TAG] = "reconcile"
            run_requests.append(
                dg.RunRequest(
                    partition_key=req.id,
                    run_key=f"reconcile:{req.id}:{relaunches + 1}",
                    job_name=job_name_for(settings, req.url_count),
                    tags=tags,
                )
            )
    skip = None if run_requests else dg.SkipReason(f"{len(done)} of {len(batch)} acted on: {', '.join(done)}")
    return dg.SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=[request_partitions_def.build_add_request(new_partitions)]
        if new_partitions
        else [],
        cursor=cursor,
        skip_reason=skip,
    )


@dg.sensor(minimum_interval_seconds=2, default_status=dg.DefaultSensorStatus.RUNNING)
def webhook_retry_sensor(context: dg.SensorEvaluationContext, pipeline: PipelineParam) -> dg.SkipReason:
    """Send due webhook retries (at most `IMGPIPE_WEBHOOK_RETRY_BATCH` per tick, concurrently).

    It launches no runs: a delivery is one HTTP POST, and its attempt is logged in the app database
    (`GET /api/requests/{id}/webhooks`). A tick takes at most about one webhook timeout.
    """
    from image_pipeline.domain.images.url_policy import FetchPolicy
    from image_pipeline.domain.services import make_sessions
    from image_pipeline.domain.telemetry import tracing
    from image_pipeline.domain.webhooks.delivery import RetryPolicy, send_due

    tracing.setup_from_env("image-pipeline-daemon")  # each retry is a `webhook.delivery` span with its request_id
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
    tracing.flush()
    for s in sent:
        context.log.info(
            f"delivery {s.delivery_id}: {s.attempt.status_code or s.attempt.error} -> {s.state}"
            f" ({s.attempt.duration_ms} ms)"
        )
    states = [s.state for s in sent]
    summary = ", ".join(f"{x}={states.count(x)}" for x in sorted(set(states)))
    return dg.SkipReason(f"sent {len(sent)} webhook deliveries: {summary}")
