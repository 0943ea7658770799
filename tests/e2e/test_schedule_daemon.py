"""The 'retry failed images' schedule ticking in a real dagster-daemon (PostgreSQL run storage, the
repo's dagster.yaml): a request whose image 404s at first is retried by the schedule and completes."""

from __future__ import annotations

import os
import shutil
import time
import uuid

import dagster as dg

from image_pipeline.cli.processes import spawn, stop
from image_pipeline.domain.catalog.csv_input import parse_csv
from image_pipeline.domain.db.engine import make_engine, session_factory, upgrade
from image_pipeline.domain.db.requests import create_request, get_request
from image_pipeline.domain.keys import input_key
from image_pipeline.domain.services import make_store
from tests.support.inputs import csv_bytes, make_image
from tests.support.paths import BIN, ROOT
from tests.support.services import WEBHOOK_SECRET, create_pg_database, drop_pg_database


def test_retry_schedule_in_a_real_daemon(tmp_path, make_settings, bucket, image_server, monkeypatch) -> None:
    dagster_pg, app_pg = create_pg_database("imgpipe_sched_dagster"), create_pg_database("imgpipe_sched_app")
    upgrade(app_pg)
    settings = make_settings(database_url=app_pg, s3_bucket=bucket, fetch_allow=image_server.allow)
    good = image_server.add("/s/good.jpg", make_image(seed=1))
    flaky = image_server.url("/s/flaky.jpg")  # 404 until the test adds it
    csv = csv_bytes([("1", "A", [good, flaky])])
    rid = str(uuid.uuid4())
    make_store(settings).put(input_key(rid), csv)
    engine = make_engine(app_pg)
    sessions = session_factory(engine)
    parsed = parse_csv(csv)
    with sessions() as s:
        create_request(
            s,
            request_id=rid,
            owner="key_sched",
            input_key=input_key(rid),
            webhook_url=None,
            filename="s.csv",
            row_count=len(parsed.rows),
            url_count=parsed.url_count,
        )

    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(ROOT / "dagster.yaml", home / "dagster.yaml")
    env = dict(
        os.environ,
        DAGSTER_HOME=str(home),
        IMGPIPE_DAGSTER_PG_URL=dagster_pg,
        IMGPIPE_DATABASE_URL=app_pg,
        IMGPIPE_REDIS_URL=settings.redis_url,
        IMGPIPE_S3_BUCKET=bucket,
        IMGPIPE_S3_ENDPOINT_URL=settings.s3_endpoint_url,
        IMGPIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
        IMGPIPE_DATA_DIR=str(tmp_path / "data"),
        IMGPIPE_FETCH_ALLOW=image_server.allow,
        IMGPIPE_RETRY_SCHEDULE_CRON="* * * * *",  # every minute, so the test sees a tick
    )
    log = tmp_path / "daemon.log"
    daemon = spawn([BIN / "dagster-daemon", "run", "-m", "image_pipeline.definitions"], env=env, cwd=ROOT, output=log)

    def wait_status(wanted: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with sessions() as s:
                status = get_request(s, rid).status
            if status == wanted:
                return
            assert daemon.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"status {status}, wanted {wanted}:\n" + log.read_text()[-4000:]
            time.sleep(0.5)

    try:
        wait_status("partially_failed", 180)  # the upload sensor's run: the flaky image 404s
        image_server.add("/s/flaky.jpg", make_image(seed=2))
        wait_status("completed", 240)  # the schedule's retry run fetched it
        assert image_server.hits.count("/s/flaky.jpg") >= 2 and image_server.hits.count("/s/good.jpg") == 1

        monkeypatch.setenv("DAGSTER_HOME", str(home))
        monkeypatch.setenv("IMGPIPE_DAGSTER_PG_URL", dagster_pg)
        with dg.DagsterInstance.get() as instance:
            runs = instance.get_runs(dg.RunsFilter(tags={"imgpipe/request_id": rid}))
            triggers = sorted(r.tags.get("imgpipe/trigger", "upload") for r in runs)
            # one run from the upload, then retries (a tick may land before the image appears)
            assert triggers.count("upload") == 1 and "retry" in triggers, triggers
            retry_run = next(r for r in runs if r.tags.get("imgpipe/trigger") == "retry")
            assert retry_run.tags["dagster/schedule_name"] == "retry_failed_images"
            assert retry_run.tags["dagster/partition"] == rid
    finally:
        stop(daemon, grace=30)  # and what it started (its code server outlives it)
        engine.dispose()
        drop_pg_database(dagster_pg)
        drop_pg_database(app_pg)
