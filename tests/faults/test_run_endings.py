"""Runs that end without a final state (issue 15, item 10), through a real daemon run: the code location
crashes mid-run, a running run is cancelled, a queued run is cancelled, a promised retry never launches.
Each request still ends in a final state with exactly one final webhook (valid signature).

The stack is the compose layout (docker-compose.yml): API, dagster-daemon, and the code location as its
own process (`dagster code-server start`) whose children are the run workers, on PostgreSQL storage.
One stack serves the module; each test leaves it idle. The bounds are short so the reconciliation
sensor acts within seconds (IMGPIPE_RUN_END_GRACE, IMGPIPE_RUN_SILENCE_TIMEOUT) and run monitoring
gives up on a cancellation quickly, and the instance runs one request at a time so a second request
stays queued behind a first.

Each test fails on main without request_reconcile_sensor (checked by removing it from the definitions):
the request stays processing or pending forever and no webhook is sent.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import dagster as dg
import pytest
from standardwebhooks.webhooks import Webhook

from image_pipeline.domain.objects.s3 import make_s3_client
from image_pipeline.domain.runs import TRIGGER_TAG
from tests.support.fault_checks import (
    FINAL,
    dagster_runs,
    db_rows,
    final_webhooks,
    one_request_csv,
    run_worker_pid,
    started_worker,
    stored_images,
)
from tests.support.fault_stack import Stack, fault_stack, slow_images, wait_until
from tests.support.servers import ImageServer, WebhookReceiver
from tests.support.services import WEBHOOK_SECRET, create_pg_database, drop_pg_database

# The first test also carries the module stack's start-up (API, daemon, code location: 25 s alone,
# 75 s on two loaded cores), and a crash test waits for two code-location starts: more than the
# suite's 300 s default on a loaded machine. The polling deadlines inside still fail with a message.
# One xdist worker runs the whole module (`--dist loadgroup` in the Makefile): spread over workers, each
# would start its own copy of the module's stack.
pytestmark = [pytest.mark.timeout(480), pytest.mark.xdist_group("run_endings")]

GRACE_S, SILENCE_S = 3, 10  # a live run below records progress about every second
CANCEL_TIMEOUT_S = 5  # run monitoring marks a run CANCELED that is still CANCELING after this
# Dagster's retry daemon (EventLogConsumerDaemon) looks for failed runs this often; see `retries_stalled`.
RETRY_DAEMON_INTERVAL = "DAGSTER_EVENT_LOG_CONSUMER_DAEMON_INTERVAL_SECONDS"


class Env:
    def __init__(self, stack: Stack, images: ImageServer, receiver: WebhookReceiver, s3: str, bucket: str, db: str):
        self.stack, self.images, self.receiver, self.s3, self.bucket, self.db = stack, images, receiver, s3, bucket, db

    def upload(self, n: int, delay_s: float) -> tuple[str, list[str]]:
        urls = slow_images(self.images, n, delay_s, prefix=f"/{uuid.uuid4().hex[:8]}")
        return self.stack.upload(one_request_csv(urls), self.receiver.url), urls

    def final(self, rid: str, timeout: float = 240) -> dict:
        return self.stack.wait_status(rid, lambda s: s["status"] in FINAL, timeout)

    def one_event(self, rid: str) -> dict:
        """The request's only webhook, its signature checked."""
        [hook] = final_webhooks(self.receiver, rid)
        return Webhook(WEBHOOK_SECRET).verify(hook.body, hook.headers)

    def runs(self, rid: str) -> list[dg.DagsterRun]:
        return dagster_runs(self.stack, rid)

    def runs_finished(self, rid: str) -> list[dg.DagsterRun]:
        wait_until(lambda: all(r.is_finished for r in self.runs(rid)), 120, f"runs of {rid} not finished")
        return self.runs(rid)

    def failure_message(self, run_id: str) -> str:
        with self.stack.instance() as instance:
            [entry] = instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
        return entry.message or ""

    def retry_pending(self, run_id: str) -> bool:
        """A step of the run failed and waits to be retried (STEP_UP_FOR_RETRY)."""
        with self.stack.instance() as instance:
            return bool(instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY))

    def cancel(self, run_id: str) -> None:
        """Terminate as the UI's "Terminate" does (GraphQL terminateRun -> the run coordinator's
        cancel_run): a queued run is cancelled in the queue, a started one through its launcher."""
        with self.stack.instance() as instance:
            assert instance.run_coordinator.cancel_run(run_id), f"run {run_id} could not be cancelled"


@pytest.fixture(scope="module")
def env(tmp_path_factory, s3_endpoint, redis_url) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("run_endings")
    bucket = f"imgpipe-{uuid.uuid4().hex[:12]}"
    make_s3_client(s3_endpoint, "us-east-1").create_bucket(Bucket=bucket)
    images, receiver = ImageServer().start(), WebhookReceiver().start()
    app_db = create_pg_database("imgpipe_fault_app")
    try:
        with fault_stack(
            tmp,
            database_url=app_db,
            redis_url=redis_url,
            bucket=bucket,
            s3_endpoint=s3_endpoint,
            allow=f"{images.allow},{receiver.allow}",
            code_location=True,
            instance_overrides={
                "concurrency": {"runs": {"max_concurrent_runs": 1}},
                "run_monitoring": {"cancel_timeout_seconds": CANCEL_TIMEOUT_S},
            },
            IMGPIPE_RECONCILE_INTERVAL="1",
            IMGPIPE_RUN_END_GRACE=str(GRACE_S),
            IMGPIPE_RUN_SILENCE_TIMEOUT=str(SILENCE_S),
        ) as stack:
            stack.start_code_location()
            stack.start_api()
            stack.start_daemon()
            yield Env(stack, images, receiver, s3_endpoint, bucket, app_db)
    finally:
        images.close()
        receiver.close()
        drop_pg_database(app_db)


@pytest.fixture
def retries_stalled(env: Env) -> Iterator[None]:
    """The daemon restarted with a retry daemon that runs once at start and then not for an hour: a run
    that fails with dagster/will_retry=true gets no retry (as when `retry_run` returns early, or the
    retry daemon is stuck or gone). The normal daemon is back afterwards."""
    env.stack.kill_daemon()
    env.stack.start_daemon(**{RETRY_DAEMON_INTERVAL: "3600"})
    yield
    env.stack.kill_daemon()
    env.stack.start_daemon()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_code_location_crash_mid_run(env: Env) -> None:
    """The code location dies with its run worker (a container crash under compose) while the run is
    STARTED. Nothing is left to notice the worker is gone: on main the run stays STARTED forever and
    the request processing. The reconciler marks the silent run failed; run retries (or the reconciler)
    run it again once, and the request completes with the images recorded before the crash kept."""
    rid, _ = env.upload(8, 1.0)
    run, pid = started_worker(env.stack, rid)
    env.stack.wait_status(rid, lambda s: s["progress"]["done"] >= 2)
    env.stack.kill_code_location()
    wait_until(lambda: not _alive(pid), 30, f"run worker {pid} outlived its code location")
    _, recorded = db_rows(env.db, rid)
    done_before = {r.url for r in recorded if r.status == "done"}
    assert len(done_before) < 8, "the run finished before the crash"
    env.stack.start_code_location()  # compose restarts the service

    final = env.final(rid)
    assert final["status"] == "completed" and final["progress"] == {"total": 8, "done": 8, "failed": 0}
    assert env.one_event(rid)["type"] == "request.completed"
    first, *again = env.runs_finished(rid)
    assert first.run_id == run.run_id and first.status == dg.DagsterRunStatus.FAILURE
    assert "no sign of life" in env.failure_message(run.run_id)
    # Exactly one run after the dead one: Dagster's retry or the reconciler's relaunch, never both.
    assert [r.status for r in again] == [dg.DagsterRunStatus.SUCCESS], [(r.run_id, r.tags) for r in again]
    assert len(stored_images(env.s3, env.bucket, rid)) == 8
    for url in done_before:
        assert env.images.hits.count(urlsplit(url).path) == 1, url


def test_cancelled_running_run(env: Env) -> None:
    """Terminated from the UI while STARTED, and the worker never gets to stop: the run stays CANCELING
    until run monitoring's cancel timeout marks it CANCELED. That is not a failure, so the failure
    sensor never runs: on main the request stays processing forever. Now it is failed, with its
    webhook, and not run again.

    Dagster answers the interrupt of a step that has a retry policy (the chunk step has one) by
    retrying that step 5 s later, so a healthy worker would carry on; the test freezes the worker in
    that pause (SIGSTOP: it stands for a worker stuck in native code), or takes the run as it ends if
    the interrupt landed where no retry applies."""
    rid, _ = env.upload(8, 1.0)
    run, pid = started_worker(env.stack, rid)
    env.stack.wait_status(rid, lambda s: s["progress"]["done"] >= 1)
    env.cancel(run.run_id)
    try:
        wait_until(
            lambda: env.retry_pending(run.run_id) or env.runs(rid)[0].is_finished,
            60,
            lambda: f"the run neither ended nor paused to retry its step: {env.runs(rid)}",
            env.stack.tail,
        )
        if not env.runs(rid)[0].is_finished:
            os.kill(pid, signal.SIGSTOP)
        final = env.final(rid)
        assert final["status"] == "failed" and "cancelled" in final["error"], final
        event = env.one_event(rid)
        assert event["type"] == "request.failed" and "cancelled" in event["data"]["error"]
        [ended] = env.runs_finished(rid)  # cancelled means stopped: the reconciler does not run it again
        assert ended.status == dg.DagsterRunStatus.CANCELED
    finally:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_cancelled_queued_run(env: Env) -> None:
    """A run cancelled while QUEUED (behind another request: one run at a time) never started, so its
    request is still pending, and the upload sensor never offers it again (its run key exists). On
    main it stays pending forever. Now it is failed, with its webhook; the request ahead completes."""
    ahead, _ = env.upload(16, 1.0)  # about 8 s of downloads: the slot stays taken
    started_worker(env.stack, ahead)
    rid, _ = env.upload(2, 0.1)
    queued: list[dg.DagsterRun] = []

    def is_queued() -> bool:
        queued[:] = [r for r in env.runs(rid) if r.status == dg.DagsterRunStatus.QUEUED]
        return bool(queued)

    wait_until(is_queued, 120, lambda: f"no queued run for {rid}: {env.runs(rid)}", env.stack.tail)
    assert env.runs(ahead)[0].status == dg.DagsterRunStatus.STARTED, "the request ahead ended too soon"
    env.cancel(queued[0].run_id)

    final = env.final(rid)
    assert final["status"] == "failed" and "cancelled" in final["error"], final
    assert env.one_event(rid)["type"] == "request.failed"
    [ended] = env.runs_finished(rid)
    assert ended.status == dg.DagsterRunStatus.CANCELED and run_worker_pid(env.stack, ended.run_id) is None
    assert env.final(ahead)["status"] == "completed"
    assert env.one_event(ahead)["type"] == "request.completed"


def test_promised_retry_that_never_launches(env: Env, retries_stalled) -> None:
    """The run worker is killed; the code location reports the run failed with dagster/will_retry=true,
    so the failure sensor stands aside, and then the retry is never launched. On main the request stays
    processing forever. The reconciler takes the retry over (withdraws Dagster's, launches its own) and
    the request completes: one run after the failed one, the images recorded before kept."""
    rid, _ = env.upload(8, 1.0)
    run, pid = started_worker(env.stack, rid)
    env.stack.wait_status(rid, lambda s: s["progress"]["done"] >= 2)
    os.kill(pid, signal.SIGKILL)
    _, recorded = db_rows(env.db, rid)
    done_before = {r.url for r in recorded if r.status == "done"}

    def failed_will_retry() -> bool:
        [r, *_] = env.runs(rid)
        return r.status == dg.DagsterRunStatus.FAILURE and "dagster/will_retry" in r.tags

    wait_until(failed_will_retry, 60, lambda: f"run not failed: {env.runs(rid)}", env.stack.tail)
    assert env.runs(rid)[0].tags["dagster/will_retry"] == "true"

    final = env.final(rid)
    assert final["status"] == "completed" and final["progress"] == {"total": 8, "done": 8, "failed": 0}
    assert env.one_event(rid)["type"] == "request.completed"
    first, *again = env.runs_finished(rid)
    assert first.run_id == run.run_id and first.tags["dagster/will_retry"] == "false"  # withdrawn
    assert [(r.status, r.tags.get(TRIGGER_TAG)) for r in again] == [(dg.DagsterRunStatus.SUCCESS, "reconcile")]
    assert len(stored_images(env.s3, env.bucket, rid)) == 8
    for url in done_before:
        assert env.images.hits.count(urlsplit(url).path) == 1, url
