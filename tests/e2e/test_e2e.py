"""The whole product with real processes: uvicorn API + dagster-daemon (sensor, run queue, run worker)
with PostgreSQL run/event storage (the repo's dagster.yaml), S3 on a moto server, Redis, and loopback
image and webhook servers. Upload over HTTP -> webhook -> status -> output CSV -> every object in S3."""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image
from standardwebhooks.webhooks import Webhook

from image_pipeline.storage import make_s3_client
from tests.conftest import WEBHOOK_SECRET, create_pg_database, drop_pg_database
from tests.helpers import csv_bytes, free_port, make_image

ROOT = Path(__file__).resolve().parents[2]
KEY = "e2e-key"


@pytest.fixture
def stack(tmp_path, pg_url, redis_url, s3_endpoint, bucket, image_server, webhook_receiver):  # noqa: ANN001, ANN201
    dagster_pg = create_pg_database("imgpipe_e2e_dagster")
    # Its own app database: the daemon would otherwise first drain every pending request other tests left.
    app_pg = create_pg_database("imgpipe_e2e_app")
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(ROOT / "dagster.yaml", home / "dagster.yaml")
    api_port = free_port()
    env = dict(
        os.environ,
        DAGSTER_HOME=str(home),
        IMGPIPE_DAGSTER_PG_URL=dagster_pg,
        IMGPIPE_DATABASE_URL=app_pg,
        IMGPIPE_REDIS_URL=redis_url,
        IMGPIPE_S3_BUCKET=bucket,
        IMGPIPE_S3_ENDPOINT_URL=s3_endpoint,
        IMGPIPE_API_KEYS=KEY,
        IMGPIPE_API_PORT=str(api_port),
        IMGPIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
        IMGPIPE_DATA_DIR=str(tmp_path / "data"),
        IMGPIPE_FETCH_ALLOW=f"{image_server.allow},{webhook_receiver.allow}",
    )
    bin_dir = Path(sys.executable).parent
    logs = tmp_path / "logs"
    logs.mkdir()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "api.main:create_app", "--port", str(api_port)],
            env=env,
            cwd=ROOT,
            stdout=open(logs / "api.log", "wb"),
            stderr=subprocess.STDOUT,
        ),
        subprocess.Popen(
            [str(bin_dir / "dagster-daemon"), "run", "-m", "image_pipeline.defs.definitions"],
            env=env,
            cwd=ROOT,
            stdout=open(logs / "daemon.log", "wb"),
            stderr=subprocess.STDOUT,
        ),
    ]
    api = f"http://127.0.0.1:{api_port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{api}/api/check_db_connection", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, (logs / "api.log").read_text()[-2000:]
        time.sleep(0.3)
    try:
        yield api, logs
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        drop_pg_database(dagster_pg)
        drop_pg_database(app_pg)


def test_upload_to_webhook_with_real_daemon(stack, image_server, webhook_receiver, s3_endpoint, bucket) -> None:  # noqa: ANN001
    api, logs = stack
    originals = {f"/e2e/{i}.jpg": make_image("JPEG", (800, 600), seed=i) for i in range(3)}
    originals["/e2e/3.png"] = make_image("PNG", (640, 480), "RGBA", seed=9)
    urls = [image_server.add(p, d) for p, d in originals.items()]
    auth = {"Authorization": f"Bearer {KEY}"}
    r = httpx.post(
        f"{api}/api/upload",
        headers=auth,
        timeout=30,
        files={"file": ("products.csv", csv_bytes([("1", "Shoe", urls[:3]), ("2", "Bag", urls[3:])]))},
        data={"webhook_url": webhook_receiver.url},
    )
    assert r.status_code == 202, r.text
    rid = r.json()["request_id"]

    try:
        [delivery] = webhook_receiver.wait_for(1, timeout=120)
    except AssertionError:
        pytest.fail("no webhook; daemon log tail:\n" + (logs / "daemon.log").read_text()[-4000:])
    event = Webhook(WEBHOOK_SECRET).verify(delivery.body, delivery.headers)
    assert event["request_id"] == rid and event["type"] == "request.completed"

    status = httpx.get(f"{api}/api/status/{rid}", headers=auth).json()
    assert status["status"] == "completed" and status["progress"] == {"total": 4, "done": 4, "failed": 0}
    assert status["output_csv_url"].endswith(f"/api/requests/{rid}/output.csv")

    out = httpx.get(f"{api}/api/requests/{rid}/output.csv", headers=auth)
    assert out.status_code == 200
    rows = list(csv.reader(io.StringIO(out.text)))
    assert rows[0][-1] == "Output Image Urls" and [r[0] for r in rows[1:]] == ["1", "2"]
    output_urls = [u for row in rows[1:] for u in row[3].split(", ")]
    assert len(output_urls) == 4

    s3 = make_s3_client(s3_endpoint, "us-east-1")
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=f"requests/{rid}/images/")["Contents"])
    assert len(keys) == 4
    for key, (path, original), url in zip(keys, originals.items(), output_urls, strict=True):
        data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        img = Image.open(io.BytesIO(data))
        img.load()
        assert img.format == "JPEG" and len(data) < len(original), path
        assert url.endswith(key)
        # The default public URL is served by the API itself.
        served = httpx.get(f"{api}/files/{key}")
        assert served.status_code == 200 and served.content == data
