"""request_reconcile_sensor on a real DagsterInstance and the real app database (PostgreSQL): runs in the
states that never reach the failure sensor (cancelled while running, cancelled while queued, a retry
promised by `dagster/will_retry` that never came, a run left STARTED by a crashed code location).

Each of these tests fails before the reconciliation sensor existed (issue 15, item 10): the request
stayed pending/processing forever and the caller never heard back.
"""

from __future__ import annotations

import time
import uuid

import dagster as dg
import pytest
from dagster._core.storage.tags import WILL_RETRY_TAG

from image_pipeline.defs.partitions import request_partitions_def
from image_pipeline.defs.sensors import request_reconcile_sensor
from image_pipeline.domain.runs import JOB_NAME, PARTITION_TAG, TRIGGER_TAG, run_tags
from tests.support.inputs import csv_bytes
from tests.support.pipeline import db_request

GRACE, SILENCE = 1.5, 3.0


@pytest.fixture
def quick(settings, monkeypatch):
    """Settings with bounds short enough for a test (grace and silence in fractions of a second)."""
    from image_pipeline.defs.resources import build_resources

    monkeypatch.setenv("IMGPIPE_WEBHOOK_SECRET", settings.webhook_secret)
    s = settings.model_copy(
        update={"run_end_grace": GRACE, "run_silence_timeout": SILENCE, "reconcile_max_relaunches": 1}
    )
    return s, build_resources(s)


def tick(resources, instance, cursor=None) -> dg.SensorResult:
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as ctx:
        return request_reconcile_sensor(ctx)


def add_run(instance, rid: str, status: dg.DagsterRunStatus, **tags: str) -> dg.DagsterRun:
    """A run of `rid` in `status` (QUEUED the way the run coordinator puts it there: an ENQUEUED event)."""
    from dagster._core.events import DagsterEvent, DagsterEventType
    from dagster._core.remote_origin import RegisteredCodeLocationOrigin, RemoteRepositoryOrigin

    instance.add_dynamic_partitions(request_partitions_def.name, [rid])
    queued = status == dg.DagsterRunStatus.QUEUED
    origin = RemoteRepositoryOrigin(RegisteredCodeLocationOrigin("loc"), "__repository__").get_job_origin(JOB_NAME)
    run = dg.DagsterRun(
        job_name=JOB_NAME,
        run_id=str(uuid.uuid4()),
        status=dg.DagsterRunStatus.NOT_STARTED if queued else status,
        tags={PARTITION_TAG: rid, **run_tags(rid, "key_test", 1, 1), **tags},
        remote_job_origin=origin,
    )
    run = instance.add_run(run)
    if queued:
        event = DagsterEvent(event_type_value=DagsterEventType.PIPELINE_ENQUEUED.value, job_name=JOB_NAME)
        instance.report_dagster_event(event, run_id=run.run_id)
        run = instance.get_run_by_id(run.run_id)
        assert run.status == dg.DagsterRunStatus.QUEUED
    return run


def mark_processing(settings, rid: str) -> None:
    from image_pipeline.domain.db import requests as repo
    from image_pipeline.domain.db.engine import make_engine, session_factory

    engine = make_engine(settings.resolved_database_url)
    with session_factory(engine)() as s:
        repo.mark_processing(s, rid, row_count=1, url_count=1)
    engine.dispose()


def one_url_request(submit, webhook_receiver) -> str:
    return submit(csv_bytes([("1", "A", ["https://x.example/a.jpg"])]), webhook_receiver.url)


def webhook_of(receiver, rid: str) -> list[dict]:
    return [d.json() for d in list(receiver.deliveries) if d.json()["request_id"] == rid]


def test_cancelled_running_run_fails_the_request_with_its_webhook(quick, instance, submit, webhook_receiver) -> None:
    """Terminated from the UI (or by run monitoring's cancel timeout) while STARTED: CANCELED is not a
    failure, so request_failure_sensor never ran. Fails before the fix: the request stays processing."""
    settings, resources = quick
    rid = one_url_request(submit, webhook_receiver)
    mark_processing(settings, rid)
    run = add_run(instance, rid, dg.DagsterRunStatus.STARTED)
    instance.report_run_canceled(run)
    assert not tick(resources, instance).run_requests  # inside the grace: the failure sensor's turn
    assert db_request(settings, rid)[0].status == "processing"
    time.sleep(GRACE + 0.1)
    tick(resources, instance)
    req, _ = db_request(settings, rid)
    assert req.status == "failed" and "cancelled" in req.error
    [event] = webhook_of(webhook_receiver, rid)
    assert event["type"] == "request.failed"
    tick(resources, instance)  # final now: never sent twice
    assert len(webhook_of(webhook_receiver, rid)) == 1


def test_queued_then_cancelled_run_fails_the_pending_request(quick, instance, submit, webhook_receiver) -> None:
    """A run cancelled while QUEUED never started, so its request is still *pending*; the upload sensor
    skips it (its run key exists) forever. Fails before the fix: pending forever, no webhook."""
    settings, resources = quick
    rid = one_url_request(submit, webhook_receiver)
    run = add_run(instance, rid, dg.DagsterRunStatus.QUEUED, **{"dagster/run_key": rid})
    assert not tick(resources, instance).run_requests and db_request(settings, rid)[0].status == "pending"
    instance.report_run_canceled(run)
    time.sleep(GRACE + 0.1)
    tick(resources, instance)
    assert db_request(settings, rid)[0].status == "failed"
    assert [e["type"] for e in webhook_of(webhook_receiver, rid)] == ["request.failed"]


def lose_retry(instance, rid: str, **tags: str) -> dg.DagsterRun:
    """A run of `rid` that failed with dagster/will_retry=true (so the failure sensor stood aside)."""
    run = add_run(instance, rid, dg.DagsterRunStatus.STARTED, **tags)
    instance.report_run_failed(run, "worker died")
    instance.add_run_tags(run.run_id, {WILL_RETRY_TAG: "true"})
    return run


def test_a_promised_retry_that_never_launched_is_relaunched_then_failed(
    quick, instance, submit, webhook_receiver
) -> None:
    """Run failed with dagster/will_retry=true (so the failure sensor stood aside) and the retry daemon
    never created the retry (its launch broke, or the daemon died in between). Fails before the fix:
    the request stays processing forever. The sensor withdraws the promised retry, re-launches the
    request once a grace later, then fails it."""
    settings, resources = quick
    rid = one_url_request(submit, webhook_receiver)
    mark_processing(settings, rid)
    run = lose_retry(instance, rid)
    time.sleep(GRACE + 0.1)
    assert not tick(resources, instance).run_requests
    assert instance.get_run_by_id(run.run_id).tags[WILL_RETRY_TAG] == "false"  # withdrawn from Dagster
    assert not tick(resources, instance).run_requests  # within the grace after the withdrawal
    time.sleep(GRACE + 0.1)
    result = tick(resources, instance)
    [again] = result.run_requests
    assert again.partition_key == rid and again.run_key == f"reconcile:{rid}:1"
    assert again.tags[TRIGGER_TAG] == "reconcile" and again.job_name == JOB_NAME
    assert db_request(settings, rid)[0].status == "processing" and not webhook_of(webhook_receiver, rid)

    # The re-launched run is lost the same way: the sensor's budget (1) is spent, so the request fails.
    lose_retry(instance, rid, **again.tags)
    time.sleep(GRACE + 0.1)
    assert not tick(resources, instance).run_requests
    time.sleep(GRACE + 0.1)
    assert not tick(resources, instance).run_requests
    req, _ = db_request(settings, rid)
    assert req.status == "failed" and "never launched" in req.error
    assert [e["type"] for e in webhook_of(webhook_receiver, rid)] == ["request.failed"]


def test_a_late_retry_is_not_doubled(quick, instance, submit, webhook_receiver) -> None:
    """Dagster's retry daemon is only late (it was down, or its code location was, for longer than the
    grace): its retry shows up after the sensor gave up waiting. Fails before the fix: the sensor had
    already launched a run of its own, so the request ran twice (seen with a real daemon:
    tests/faults/test_run_endings.py). Now the sensor only withdraws the promise at first, and the
    late retry is the one run."""
    settings, resources = quick
    rid = one_url_request(submit, webhook_receiver)
    mark_processing(settings, rid)
    lose_retry(instance, rid)
    time.sleep(GRACE + 0.1)
    assert not tick(resources, instance).run_requests
    late = add_run(instance, rid, dg.DagsterRunStatus.QUEUED, **{"dagster/retry_number": "1"})
    time.sleep(GRACE + 0.1)
    assert not tick(resources, instance).run_requests
    assert db_request(settings, rid)[0].status == "processing" and not webhook_of(webhook_receiver, rid)

    # The late retry is the request's run from now on: cancelled, it fails the request (which the
    # tests after this one must not find unfinished in the shared database).
    instance.report_run_canceled(late)
    time.sleep(GRACE + 0.1)
    assert not tick(resources, instance).run_requests
    assert db_request(settings, rid)[0].status == "failed"
    assert [e["type"] for e in webhook_of(webhook_receiver, rid)] == ["request.failed"]


def test_a_silent_started_run_is_marked_failed_then_its_request_failed(
    quick, instance, submit, webhook_receiver
) -> None:
    """A code-location crash leaves the run STARTED with nobody to notice its worker is gone. Fails
    before the fix: STARTED forever (and its request_id concurrency slot blocks any re-run)."""
    settings, resources = quick
    rid = one_url_request(submit, webhook_receiver)
    mark_processing(settings, rid)
    run = add_run(instance, rid, dg.DagsterRunStatus.STARTED)
    assert not tick(resources, instance).run_requests  # fresh: alive
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED
    time.sleep(SILENCE + 0.2)
    tick(resources, instance)
    dead = instance.get_run_by_id(run.run_id)
    assert dead.status == dg.DagsterRunStatus.FAILURE  # run retries (in the daemon) would re-run it now
    assert db_request(settings, rid)[0].status == "processing"
    time.sleep(GRACE + 0.1)
    tick(resources, instance)  # no retry came (no daemon here): the request is failed, once
    assert db_request(settings, rid)[0].status == "failed"
    assert [e["type"] for e in webhook_of(webhook_receiver, rid)] == ["request.failed"]


def test_live_and_queued_runs_are_left_alone(quick, instance, submit, webhook_receiver) -> None:
    settings, resources = quick
    live = one_url_request(submit, webhook_receiver)
    queued = one_url_request(submit, webhook_receiver)
    mark_processing(settings, live)
    run = add_run(instance, live, dg.DagsterRunStatus.STARTED)
    add_run(instance, queued, dg.DagsterRunStatus.QUEUED)
    for _ in range(3):
        time.sleep(SILENCE / 2)
        instance.report_engine_event("still working", run)  # a sign of life inside the silence bound
        assert not tick(resources, instance).run_requests
    assert db_request(settings, live)[0].status == "processing"
    assert db_request(settings, queued)[0].status == "pending"
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED


def test_the_sensor_walks_every_unfinished_request(quick, instance, submit, webhook_receiver) -> None:
    """Batches of IMGPIPE_RECONCILE_BATCH from the cursor, then round again: the newest are reached."""
    settings, _ = quick
    from image_pipeline.defs.resources import build_resources

    resources = build_resources(settings.model_copy(update={"reconcile_batch": 2, "run_end_grace": GRACE}))
    rids = [one_url_request(submit, webhook_receiver) for _ in range(3)]
    for rid in rids:
        instance.report_run_canceled(add_run(instance, rid, dg.DagsterRunStatus.QUEUED))
    time.sleep(GRACE + 0.1)
    cursor, seen = None, 0
    for _ in range(20):  # other tests' unfinished requests share this database: walk until ours are done
        cursor = tick(resources, instance, cursor).cursor
        seen += 1
        if all(db_request(settings, r)[0].status == "failed" for r in rids):
            break
    assert all(db_request(settings, r)[0].status == "failed" for r in rids), seen
