"""'retry failed images' and retention schedules, evaluated with Dagster's testing APIs and run for real."""

from datetime import UTC, datetime, timedelta

import dagster as dg
from sqlalchemy import update

from image_pipeline.defs.assets import request_assets
from image_pipeline.defs.jobs import process_request_job
from image_pipeline.defs.partitions import request_partitions_def
from image_pipeline.defs.resources import build_resources
from image_pipeline.defs.schedules import build_schedules, purge_expired_job
from image_pipeline.domain.db.engine import make_engine, session_factory
from image_pipeline.domain.db.models import ImageRequest
from image_pipeline.domain.keys import input_key
from image_pipeline.domain.services import make_store
from tests.support.inputs import csv_bytes, make_image
from tests.support.pipeline import db_request, run_partition


def schedules(settings) -> dict[str, dg.ScheduleDefinition]:
    return {s.name: s for s in build_schedules(settings)}


def evaluate(schedule: dg.ScheduleDefinition, instance, resources, when: datetime | None = None):
    """One tick, as the daemon would evaluate it (inside a repository, so partitions are validated)."""
    repo = dg.Definitions(
        assets=request_assets, jobs=[process_request_job, purge_expired_job], schedules=[schedule], resources=resources
    ).get_repository_def()
    with dg.build_schedule_context(
        instance=instance,
        resources=resources,
        scheduled_execution_time=when or datetime.now(UTC),
        repository_def=repo,
    ) as context:
        return schedule.evaluate_tick(context)


def test_retry_schedule_reruns_failed_urls_of_recent_requests(settings, resources, instance, submit, image_server):
    good = image_server.add("/r/good.jpg", make_image(seed=1))
    flaky = image_server.url("/r/flaky.jpg")  # 404 on the first run
    rid = submit(csv_bytes([("1", "A", [good, flaky])]))
    assert run_partition(rid, resources, instance).success
    assert db_request(settings, rid)[0].status == "partially_failed"
    retry = schedules(settings)["retry_failed_images"]

    tick = evaluate(retry, instance, resources)
    [run] = tick.run_requests
    assert run.partition_key == rid and run.run_key == f"retry:{rid}:1"
    assert run.tags["imgpipe/request_id"] == rid and run.tags["imgpipe/trigger"] == "retry"
    assert run.tags["imgpipe/urls"] == "2" and run.tags["imgpipe/rows"] == "1"

    image_server.add("/r/flaky.jpg", make_image(seed=2))
    hits = list(image_server.hits)
    result = dg.materialize(request_assets, partition_key=rid, resources=resources, instance=instance, tags=run.tags)
    assert result.success
    assert image_server.hits[len(hits) :] == ["/r/flaky.jpg"]  # only the failed URL was fetched again
    req, results = db_request(settings, rid)
    assert req.status == "completed" and [r.status for r in results] == ["done", "done"]

    skipped = evaluate(retry, instance, resources)
    assert not skipped.run_requests and "no request" in skipped.skip_message
    # Too old for the look-back window: not retried.
    later = evaluate(retry, instance, resources, datetime.now(UTC) + timedelta(hours=settings.retry_lookback_hours + 1))
    assert not later.run_requests


def test_retry_schedule_gives_up_after_max_attempts(settings, instance, submit, image_server, monkeypatch):
    monkeypatch.setenv("IMGPIPE_WEBHOOK_SECRET", settings.webhook_secret)
    resources = build_resources(settings.model_copy(update={"retry_max_attempts": 1}))
    rid = submit(csv_bytes([("1", "A", [image_server.url("/never.jpg")])]))
    assert run_partition(rid, resources, instance).success
    retry = schedules(settings)["retry_failed_images"]
    [run] = evaluate(retry, instance, resources).run_requests
    dg.materialize(request_assets, partition_key=rid, resources=resources, instance=instance, tags=run.tags)
    assert db_request(settings, rid)[0].status == "failed"
    assert not evaluate(retry, instance, resources).run_requests  # one attempt used: no more


def test_retention_is_off_by_default(settings, resources, instance) -> None:
    assert settings.retention_days is None
    tick = evaluate(schedules(settings)["retention"], instance, resources)
    assert not tick.run_requests and "IMGPIPE_RETENTION_DAYS" in tick.skip_message


def test_retention_deletes_old_requests_objects_and_partitions(settings, instance, submit, image_server, monkeypatch):
    monkeypatch.setenv("IMGPIPE_WEBHOOK_SECRET", settings.webhook_secret)
    resources = build_resources(settings.model_copy(update={"retention_days": 30}))
    url = image_server.add("/k/a.jpg", make_image())
    old, new = submit(csv_bytes([("1", "A", [url])])), submit(csv_bytes([("1", "B", [url])]))
    for rid in (old, new):
        assert run_partition(rid, resources, instance).success
    engine = make_engine(settings.resolved_database_url)
    with session_factory(engine)() as s:
        long_ago = datetime.now(UTC) - timedelta(days=31)
        s.execute(update(ImageRequest).where(ImageRequest.id == old).values(created_at=long_ago, updated_at=long_ago))
        s.commit()
    engine.dispose()

    [run] = evaluate(schedules(settings)["retention"], instance, resources).run_requests
    assert run.tags["imgpipe/trigger"] == "retention"
    result = purge_expired_job.execute_in_process(run_config=run.run_config, resources=resources, instance=instance)
    assert result.success
    summary = result.output_for_node("purge_expired_requests")
    assert old in summary["request_ids"] and new not in summary["request_ids"]
    assert summary["objects"] >= 4  # input, rows, image, output CSV

    store = make_store(settings)
    assert db_request(settings, old) == (None, [])
    assert not store.exists(input_key(old)) and store.exists(input_key(new))
    assert db_request(settings, new)[0].status == "completed"
    partitions = instance.get_dynamic_partitions(request_partitions_def.name)
    assert old not in partitions and new in partitions
