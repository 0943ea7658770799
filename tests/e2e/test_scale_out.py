"""A large request spread over Celery workers: IMGPIPE_EXECUTOR=celery on the machine's RabbitMQ, a real
`dagster-celery` worker process, the real daemon and API. Chunk steps run on the worker; the request
completes with every image once, in input order."""

from __future__ import annotations

import csv
import io
import uuid

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from image_pipeline.domain.objects.s3 import make_s3_client
from tests.support.inputs import csv_bytes, make_image
from tests.support.paths import BIN, ROOT
from tests.support.services import WEBHOOK_SECRET
from tests.support.stack import KEY, running_stack

BROKER = "pyamqp://guest:guest@127.0.0.1:5672//"


def require_rabbitmq() -> None:
    import kombu

    try:
        with kombu.Connection(BROKER, connect_timeout=5) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:
        pytest.fail(f"RabbitMQ at {BROKER} is required for the tests: {exc}", pytrace=False)


def test_large_request_runs_its_chunks_on_celery_workers(
    tmp_path,
    redis_url,
    s3_endpoint,
    bucket,
    image_server,
    webhook_receiver,
) -> None:
    require_rabbitmq()
    queue = f"imgpipe-test-{uuid.uuid4().hex[:8]}"  # this test's own queue: nothing else picks its tasks
    env = {
        "IMGPIPE_REDIS_URL": redis_url,
        "IMGPIPE_S3_BUCKET": bucket,
        "IMGPIPE_S3_ENDPOINT_URL": s3_endpoint,
        "IMGPIPE_FETCH_ALLOW": f"{image_server.allow},{webhook_receiver.allow}",
        "IMGPIPE_EXECUTOR": "celery",
        "IMGPIPE_CELERY_BROKER_URL": BROKER,
        "IMGPIPE_CELERY_BACKEND_URL": "rpc://",
        "IMGPIPE_CELERY_QUEUE": queue,
        "IMGPIPE_CHUNK_SIZE": "4",
        "IMGPIPE_FANOUT_THRESHOLD": "4",
    }
    worker = [
        str(BIN / "dagster-celery"),
        *("worker", "start", "-A", "dagster_celery.app", "-y", str(ROOT / "deploy/celery/celery.yaml")),
        *("-q", queue, "-n", queue, "--", "--pool=solo"),
    ]
    urls = [image_server.add(f"/cel/{i}.jpg", make_image("JPEG", (200 + i, 150), seed=i)) for i in range(10)]
    small = [image_server.add("/cel/small.jpg", make_image("JPEG", (90, 60), seed=99))]
    with running_stack(tmp_path, env, extra={"celery": worker}) as stack:
        auth = {"Authorization": f"Bearer {KEY}"}
        rids = []
        for rows in ([("1", "Big A", urls[:5]), ("2", "Big B", urls[5:])], [("1", "Small", small)]):
            r = httpx.post(
                f"{stack.api}/api/upload",
                headers=auth,
                timeout=30,
                files={"file": ("p.csv", csv_bytes(rows))},
                data={"webhook_url": webhook_receiver.url},
            )
            assert r.status_code == 202, r.text
            rids.append(r.json()["request_id"])
        try:
            deliveries = webhook_receiver.wait_for(2, timeout=240)
        except AssertionError:
            pytest.fail(f"no webhook; daemon:\n{stack.log_tail('daemon')}\ncelery:\n{stack.log_tail('celery')}")
        events = {e["request_id"]: e for e in (Webhook(WEBHOOK_SECRET).verify(d.body, d.headers) for d in deliveries)}
        assert {e["type"] for e in events.values()} == {"request.completed"}, events
        big, tiny = rids

        out = httpx.get(f"{stack.api}/api/requests/{big}/output.csv", headers=auth)
        rows = list(csv.reader(io.StringIO(out.text)))
        assert [r[2].split(", ") for r in rows[1:]] == [urls[:5], urls[5:]]
        s3 = make_s3_client(s3_endpoint, "us-east-1")
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"requests/{big}/images/")
        assert listed["KeyCount"] == 10  # every image once
        outputs = [u for r in rows[1:] for u in r[3].split(", ")]
        assert sorted(u.rsplit("/", 1)[1] for u in outputs) == sorted(
            o["Key"].rsplit("/", 1)[1] for o in listed["Contents"]
        )
        # The three chunk steps of the large request ran on the Celery worker; the small request
        # stayed on the in-process job.
        worker_log = stack.log_tail("celery", 200_000)
        for n in range(3):
            assert f"compressed_images.compress_chunk[chunk_{n:05d}]" in worker_log
        assert "process_request_fanout_job" in _run_jobs(stack.env, big)
        assert "process_request_job" in _run_jobs(stack.env, tiny)


def _run_jobs(env: dict[str, str], request_id: str) -> str:
    import subprocess
    import sys

    code = (
        "import dagster as dg\n"
        "inst = dg.DagsterInstance.get()\n"
        f"runs = inst.get_runs(dg.RunsFilter(tags={{'dagster/partition': '{request_id}'}}))\n"
        "print(' '.join(r.job_name for r in runs))\n"
    )
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout


def test_small_requests_run_one_after_another_in_one_warm_celery_run_worker(
    tmp_path,
    redis_url,
    s3_endpoint,
    bucket,
    image_server,
    webhook_receiver,
) -> None:
    """deploy/celery/dagster.yaml (CeleryRunLauncher, pooled Dagster storage): whole runs execute in one
    already-running worker process, which keeps its S3 client and database engines from run to run
    (image_pipeline.domain.process_cache). Between the two requests PostgreSQL drops every connection the
    worker holds (as a restart would): the second request still completes."""
    from sqlalchemy import text

    from tests.support.services import pg_admin_engine

    require_rabbitmq()
    queue = f"imgpipe-test-{uuid.uuid4().hex[:8]}"
    env = {
        "IMGPIPE_REDIS_URL": redis_url,
        "IMGPIPE_S3_BUCKET": bucket,
        "IMGPIPE_S3_ENDPOINT_URL": s3_endpoint,
        "IMGPIPE_FETCH_ALLOW": f"{image_server.allow},{webhook_receiver.allow}",
        "IMGPIPE_EXECUTOR": "celery",
        "IMGPIPE_CELERY_BROKER_URL": BROKER,
        "IMGPIPE_CELERY_BACKEND_URL": redis_url,
        "IMGPIPE_CELERY_QUEUE": queue,
        "IMGPIPE_CELERY_RUN_QUEUE": queue + "-runs",
    }
    worker = [
        str(BIN / "dagster-celery"),
        *("worker", "start", "-A", "dagster_celery.app", "-y", str(ROOT / "deploy/celery/celery.yaml")),
        *("-q", queue + "-runs", "-n", queue, "--", "--pool=solo"),
    ]
    urls = [image_server.add(f"/warm/{i}.jpg", make_image("JPEG", (120 + i, 90), seed=i)) for i in range(4)]
    instance_yaml = ROOT / "deploy/celery/dagster.yaml"
    with running_stack(tmp_path, env, extra={"celery": worker}, instance_yaml=instance_yaml) as stack:
        auth = {"Authorization": f"Bearer {KEY}"}
        rids = []
        for n, batch in enumerate((urls[:2], urls[2:])):
            if n:  # what a PostgreSQL restart does to the connections the worker keeps between runs
                dbs = [stack.env["IMGPIPE_DATABASE_URL"], stack.env["IMGPIPE_DAGSTER_PG_URL"]]
                admin = pg_admin_engine()
                with admin.connect() as c:
                    c.execute(
                        text("select pg_terminate_backend(pid) from pg_stat_activity where datname = any(:d)"),
                        {"d": [u.rsplit("/", 1)[1] for u in dbs]},
                    )
                admin.dispose()
            r = httpx.post(
                f"{stack.api}/api/upload",
                headers=auth,
                timeout=30,
                files={"file": ("p.csv", csv_bytes([("1", f"Warm {n}", batch)]))},
                data={"webhook_url": webhook_receiver.url},
            )
            assert r.status_code == 202, r.text
            rids.append(r.json()["request_id"])
            try:
                webhook_receiver.wait_for(n + 1, timeout=180)
            except AssertionError:
                pytest.fail(f"no webhook; daemon:\n{stack.log_tail('daemon')}\ncelery:\n{stack.log_tail('celery')}")
        events = [Webhook(WEBHOOK_SECRET).verify(d.body, d.headers) for d in webhook_receiver.deliveries]
        assert [(e["request_id"], e["type"]) for e in events] == [(rid, "request.completed") for rid in rids]
        for rid, batch in zip(rids, (urls[:2], urls[2:]), strict=True):
            out = httpx.get(f"{stack.api}/api/requests/{rid}/output.csv", headers=auth)
            assert list(csv.reader(io.StringIO(out.text)))[1][2].split(", ") == batch
        # Both runs executed in the same worker process (Dagster records its pid per run).
        pids = _run_pids(stack.env, rids)
        assert len(pids) == 2 and len(set(pids)) == 1, pids


def _run_pids(env: dict[str, str], request_ids: list[str]) -> list[str]:
    import subprocess
    import sys

    code = (
        "import re, dagster as dg\n"
        "inst = dg.DagsterInstance.get()\n"
        f"for rid in {request_ids!r}:\n"
        "    run = inst.get_runs(dg.RunsFilter(tags={'dagster/partition': rid}))[0]\n"
        "    msgs = [e.message for e in inst.all_logs(run.run_id) if 'Started process for run' in (e.message or '')]\n"
        "    print(re.search(r'pid: (\\d+)', msgs[0]).group(1))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return proc.stdout.split()
