"""Two schedules: "retry failed images" over recent requests, and retention (off unless configured).

Retrying re-runs the request's partition: its chunks skip URLs already stored, so only the
failed ones are fetched again. The same works by hand from the UI: select partitions of
`process_request_job` and launch a backfill.
"""

from datetime import UTC, datetime, timedelta

import dagster as dg

from image_pipeline.defs.jobs import process_request_job
from image_pipeline.defs.partitions import request_partitions_def
from image_pipeline.defs.resources import PipelineParam
from image_pipeline.domain.clock import as_utc
from image_pipeline.domain.runs import PARTITION_TAG, REQUEST_ID_TAG, RETRY_TAG, TRIGGER_TAG, run_tags
from image_pipeline.domain.settings import Settings, get_settings

_ACTIVE = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


class PurgeConfig(dg.Config):
    before: str  # ISO timestamp: requests created before it are deleted


def _now(context: dg.ScheduleEvaluationContext) -> datetime:
    return as_utc(context.scheduled_execution_time) or datetime.now(UTC)


def retry_run_requests(
    context: dg.ScheduleEvaluationContext, pipeline: PipelineParam
) -> list[dg.RunRequest] | dg.SkipReason:
    """One run per recent request with failed URLs, unless it is running or used up its attempts."""
    from image_pipeline.domain.db.maintenance import retry_candidates

    since = _now(context) - timedelta(hours=pipeline.settings.retry_lookback_hours)
    with pipeline.context().sessions() as s:
        candidates = retry_candidates(s, since)
    instance, runs = context.instance, []
    for req in candidates:
        if not instance.has_dynamic_partition(request_partitions_def.name, req.id):
            continue
        if instance.get_runs_count(dg.RunsFilter(tags={PARTITION_TAG: req.id}, statuses=_ACTIVE)):
            continue
        attempts = instance.get_runs_count(dg.RunsFilter(tags={REQUEST_ID_TAG: req.id, TRIGGER_TAG: "retry"}))
        if attempts >= pipeline.settings.retry_max_attempts:
            continue
        tags = run_tags(req.id, req.owner, req.row_count, req.url_count, pipeline.settings)
        tags.update({TRIGGER_TAG: "retry", RETRY_TAG: str(attempts + 1)})
        runs.append(dg.RunRequest(partition_key=req.id, run_key=f"retry:{req.id}:{attempts + 1}", tags=tags))
    return runs or dg.SkipReason(f"no request with failed images to retry since {since.isoformat()}")


@dg.op(description="Delete requests created before the cut-off: objects, rows, cache entries, partitions.")
def purge_expired_requests(
    context: dg.OpExecutionContext, config: PurgeConfig, pipeline: PipelineParam
) -> dg.Output[dict]:
    from image_pipeline.domain.request.retention import purge_expired

    before = datetime.fromisoformat(config.before)
    summary = purge_expired(pipeline.context(), before)
    for rid in summary.request_ids:
        if context.instance.has_dynamic_partition(request_partitions_def.name, rid):
            context.instance.delete_dynamic_partition(request_partitions_def.name, rid)
    context.log.info(f"purged {summary.requests} requests and {summary.objects} objects created before {before}")
    return dg.Output(
        summary.as_dict(),
        metadata={
            "before": dg.MetadataValue.text(before.isoformat()),
            "requests": dg.MetadataValue.int(summary.requests),
            "objects": dg.MetadataValue.int(summary.objects),
            # Shared outputs of the sync memory that no remaining request points at (docs/sync.md).
            "memory_outputs": dg.MetadataValue.int(summary.memory_outputs),
        },
    )


@dg.job(
    description="Retention: delete requests older than IMGPIPE_RETENTION_DAYS.", executor_def=dg.in_process_executor
)
def purge_expired_job() -> None:
    purge_expired_requests()


def retention_run_request(
    context: dg.ScheduleEvaluationContext, pipeline: PipelineParam
) -> dg.RunRequest | dg.SkipReason:
    if not pipeline.settings.retention_days:
        return dg.SkipReason("retention is off (set IMGPIPE_RETENTION_DAYS to delete old requests)")
    before = (_now(context) - timedelta(days=pipeline.settings.retention_days)).replace(microsecond=0)
    return dg.RunRequest(
        run_key=f"retention:{before.isoformat()}",
        run_config=dg.RunConfig(ops={"purge_expired_requests": PurgeConfig(before=before.isoformat())}),
        tags={TRIGGER_TAG: "retention"},
    )


def build_schedules(s: Settings) -> list[dg.ScheduleDefinition]:
    """The schedules, at the times `s` gives (IMGPIPE_RETRY_SCHEDULE_CRON, IMGPIPE_RETENTION_SCHEDULE_CRON)."""

    @dg.schedule(
        name="retry_failed_images",
        job=process_request_job,
        cron_schedule=s.retry_schedule_cron,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Re-run recent requests that have failed images (only the failed URLs are fetched again).",
    )
    def retry_failed_images(context: dg.ScheduleEvaluationContext, pipeline: PipelineParam):
        return retry_run_requests(context, pipeline)

    @dg.schedule(
        name="retention",
        job=purge_expired_job,
        cron_schedule=s.retention_schedule_cron,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Delete requests older than IMGPIPE_RETENTION_DAYS (skips when it is unset).",
    )
    def retention(context: dg.ScheduleEvaluationContext, pipeline: PipelineParam):
        return retention_run_request(context, pipeline)

    return [retry_failed_images, retention]


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(jobs=[purge_expired_job], schedules=build_schedules(get_settings()))
