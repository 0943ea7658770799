"""What a fault test reads back from a running stack: a request's Dagster runs and their worker
processes, its final webhooks, its rows in the app database, its stored images."""

from __future__ import annotations

import re
import time

import dagster as dg
from sqlalchemy import select

from image_pipeline.domain.db.engine import make_engine, session_factory
from image_pipeline.domain.db.models import ImageRequest, ImageResult
from image_pipeline.domain.objects.s3 import make_s3_client
from tests.support.fault_stack import Stack, wait_until
from tests.support.inputs import csv_bytes

FINAL = ("completed", "partially_failed", "failed")


def one_request_csv(urls: list[str]) -> bytes:
    return csv_bytes([(str(i + 1), f"P{i}", [u]) for i, u in enumerate(urls)])


def stored_images(s3_endpoint: str, bucket: str, rid: str) -> list[str]:
    listed = make_s3_client(s3_endpoint, "us-east-1").list_objects_v2(Bucket=bucket, Prefix=f"requests/{rid}/images/")
    return sorted(o["Key"] for o in listed.get("Contents", []))


def webhooks_for(receiver, rid: str) -> list:
    return [d for d in list(receiver.deliveries) if d.json()["request_id"] == rid]


def final_webhooks(receiver, rid: str, settle_s: float = 3.0, timeout: float = 120) -> list:
    """The deliveries for `rid`: waits for the first, then a little longer for any duplicate to show up."""
    wait_until(lambda: bool(webhooks_for(receiver, rid)), timeout, f"no webhook for {rid}")
    time.sleep(settle_s)
    return webhooks_for(receiver, rid)


def db_rows(url: str, rid: str) -> tuple[ImageRequest, list[ImageResult]]:
    engine = make_engine(url)
    with session_factory(engine)() as s:
        req = s.scalars(select(ImageRequest).where(ImageRequest.id == rid)).one()
        results = list(s.scalars(select(ImageResult).where(ImageResult.request_id == rid)).all())
    engine.dispose()
    return req, results


def dagster_runs(stack: Stack, rid: str) -> list[dg.DagsterRun]:
    """Every run of the request's partition, oldest first."""
    with stack.instance() as instance:
        records = instance.get_run_records(filters=dg.RunsFilter(tags={"dagster/partition": rid}))
    return [r.dagster_run for r in sorted(records, key=lambda r: r.storage_id)]


def run_worker_pid(stack: Stack, run_id: str) -> int | None:
    """The pid of a run's worker process: the warm launcher's run tag, or the default launcher's
    "Started process for run (pid: N)" event."""
    from dagster._core.events import DagsterEventType

    from image_pipeline.dagster_plugins.warm_fork_launcher import PID_TAG

    with stack.instance() as instance:
        tagged = instance.get_run_by_id(run_id).tags.get(PID_TAG)
        if tagged:
            return int(tagged)
        for entry in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT):
            m = re.search(r"Started process for run \(pid: (\d+)\)", entry.message or "")
            if m:
                return int(m.group(1))
    return None


def started_worker(stack: Stack, rid: str, timeout: float = 180) -> tuple[dg.DagsterRun, int]:
    """The request's first run once it is STARTED, and its worker's pid."""
    found: list = []

    def started() -> bool:
        runs = dagster_runs(stack, rid)
        if runs and runs[0].status == dg.DagsterRunStatus.STARTED:
            pid = run_worker_pid(stack, runs[0].run_id)
            found[:] = [runs[0], pid] if pid else []
        return bool(found)

    wait_until(started, timeout, f"the run of {rid} never started", stack.tail)
    return found[0], found[1]
