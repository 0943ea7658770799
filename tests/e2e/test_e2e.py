"""The whole product with real processes: uvicorn API + dagster-webserver (the API's run-launch fast path)
+ dagster-daemon (sensor, run queue, run worker) with PostgreSQL run/event storage (the repo's
dagster.yaml), S3 on the suite's Swift (s3api, https), Redis, and loopback image and webhook servers.
Upload over HTTP -> webhook -> status -> output CSV -> every object in S3; and the fast path racing the
sensor gives exactly one run per request."""

from __future__ import annotations

import csv
import io
import time

import httpx
import pytest
from PIL import Image
from standardwebhooks.webhooks import Webhook

from image_pipeline.domain.objects.s3 import make_s3_client
from tests.support.inputs import csv_bytes, make_image
from tests.support.services import WEBHOOK_SECRET
from tests.support.stack import KEY, running_stack


@pytest.fixture
def stack(tmp_path, redis_url, s3_endpoint, bucket, image_server, webhook_receiver):
    """API + webserver (the fast path) + daemon, runs forked by the warm launcher `make up` uses."""
    env = {
        "IMGPIPE_REDIS_URL": redis_url,
        "IMGPIPE_S3_BUCKET": bucket,
        "IMGPIPE_S3_ENDPOINT_URL": s3_endpoint,
        "IMGPIPE_FETCH_ALLOW": f"{image_server.allow},{webhook_receiver.allow}",
    }
    with running_stack(tmp_path, env, webserver=True, warm_launcher=True) as s:
        yield s.api, s.logs, s.ui, s.env


def test_upload_to_webhook_with_real_daemon(stack, image_server, webhook_receiver, s3_endpoint, bucket) -> None:
    api, logs, ui, _ = stack
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
    products = event["data"]["products"]  # a small request: every product listed (large ones: output CSV)
    assert [p["serial"] for p in products] == ["1", "2"] and event["data"]["products_omitted"] is False

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


def _runs_of(ui: str, request_id: str) -> list[dict]:
    query = """query Runs($tag: String!) { runsOrError(filter: {tags: [{key: "imgpipe/request_id", value: $tag}]}) {
      ... on Runs { results { runId status tags { key value } } } } }"""
    r = httpx.post(f"{ui}/graphql", json={"query": query, "variables": {"tag": request_id}}, timeout=30)
    return r.json()["data"]["runsOrError"]["results"]


def test_fast_path_and_sensor_race_gives_one_run_per_request(stack, image_server, webhook_receiver) -> None:
    """A burst of uploads at random spacing across the sensor's ticks: both launchers see every request
    pending; each request still gets exactly one run, and every caller hears back once."""
    import random

    api, logs, ui, _ = stack
    url = image_server.add("/race/a.jpg", make_image("JPEG", (320, 240), seed=1))
    auth = {"Authorization": f"Bearer {KEY}"}
    rng = random.Random(9)
    ids = []
    for i in range(8):
        r = httpx.post(
            f"{api}/api/upload",
            headers=auth,
            timeout=30,
            files={"file": ("p.csv", csv_bytes([(str(i), "P", [url])]))},
            data={"webhook_url": webhook_receiver.url},
        )
        assert r.status_code == 202, r.text
        ids.append(r.json()["request_id"])
        time.sleep(rng.uniform(0, 1.5))
    try:
        deliveries = webhook_receiver.wait_for(len(ids), timeout=240)
    except AssertionError:
        pytest.fail("missing webhooks; daemon log tail:\n" + (logs / "daemon.log").read_text()[-4000:])
    time.sleep(6)  # one more sensor tick: a duplicate run would show up now
    assert sorted(d.json()["request_id"] for d in webhook_receiver.deliveries) == sorted(ids)
    assert len(deliveries) == len(ids)
    launched_by = []
    for rid in ids:
        runs = _runs_of(ui, rid)
        assert len(runs) == 1, (rid, runs)
        tags = {t["key"]: t["value"] for t in runs[0]["tags"]}
        assert tags["dagster/run_key"] == rid and tags["dagster/partition"] == rid
        assert runs[0]["status"] == "SUCCESS" and tags["imgpipe/run_worker_pid"]  # forked by the warm launcher
        launched_by.append(tags.get("imgpipe/launched_by", "sensor"))
    assert "api" in launched_by  # the fast path really launched (the sensor alone would also pass the rest)


def test_forced_race_one_winner_real_graphql(stack, make_settings, bucket, monkeypatch) -> None:
    """Fast path (real GraphQL launch on the real webserver) and a sensor evaluation started at the same
    instant on the same fresh requests: for each request exactly one launcher wins (counting the
    stack's own daemon, whose sensor ticks meanwhile)."""
    import asyncio
    import threading

    import dagster as dg

    from image_pipeline.defs.resources import build_resources
    from image_pipeline.defs.sensors import upload_sensor
    from image_pipeline.domain.db.engine import make_engine, session_factory
    from image_pipeline.domain.request.fast_launch import FastLauncher
    from tests.support.pipeline import submit_to

    api, logs, ui, env = stack
    settings = make_settings(s3_bucket=bucket)
    monkeypatch.setenv("IMGPIPE_WEBHOOK_SECRET", WEBHOOK_SECRET)
    monkeypatch.setenv("IMGPIPE_DAGSTER_PG_URL", env["IMGPIPE_DAGSTER_PG_URL"])
    resources = build_resources(settings)
    engine = make_engine(settings.resolved_database_url)
    sessions = session_factory(engine)
    csv = csv_bytes([("1", "P", ["http://127.0.0.1:9/unused.jpg"])])
    try:
        with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
            for _ in range(4):
                rids = [submit_to(settings, sessions, csv) for _ in range(3)]
                barrier = threading.Barrier(2)
                fast: dict[str, str | None] = {}
                sensor_keys: list[str] = []

                def run_fast(rids: list[str], barrier: threading.Barrier, fast: dict) -> None:
                    async def go() -> None:
                        launcher = FastLauncher(ui, sessions)  # as the API holds one per process
                        await launcher.repository()  # warm, like a running API: the race is claim vs claim
                        barrier.wait()
                        try:
                            for rid in rids:
                                fast[rid] = await launcher.claim_and_launch(rid, "key_test", 1, 1)
                        finally:
                            await launcher.aclose()

                    asyncio.run(go())

                def run_sensor(barrier: threading.Barrier, sensor_keys: list[str]) -> None:
                    with dg.build_sensor_context(instance=instance, resources=resources) as ctx:
                        barrier.wait()
                        result = upload_sensor(ctx)
                    sensor_keys.extend(r.run_key for r in result.run_requests or [])

                threads = [
                    threading.Thread(target=run_fast, args=(rids, barrier, fast)),
                    threading.Thread(target=run_sensor, args=(barrier, sensor_keys)),
                ]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                time.sleep(6)  # let a daemon sensor tick that started meanwhile finish creating its runs
                for rid in rids:
                    # Runs that exist (fast path's or the daemon's) + runs our sensor evaluation requested.
                    launches = len(_runs_of(ui, rid)) + sensor_keys.count(rid)
                    assert launches == 1, (rid, fast, sensor_keys, _runs_of(ui, rid))
    finally:
        engine.dispose()


class _DelayingProxy:
    """Forwards GraphQL to the real webserver; `launchRun` is held `delay_s` before it is forwarded
    ("before") or before its reply goes back ("after"), past the client's timeout either way."""

    def __init__(self, upstream: str, delay_s: float) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from tests.support.servers import free_port

        self.upstream, self.delay_s, self.mode, self.launches = upstream, delay_s, "after", 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                launch = b"ImgpipeLaunchRun" in body
                if launch:
                    proxy.launches += 1
                    if proxy.mode == "before":
                        time.sleep(proxy.delay_s)
                r = httpx.post(proxy.upstream + self.path, content=body, headers={"Content-Type": "application/json"})
                if launch and proxy.mode == "after":
                    time.sleep(proxy.delay_s)
                try:
                    self.send_response(r.status_code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(r.content)))
                    self.end_headers()
                    self.wfile.write(r.content)
                except OSError:
                    pass  # the client gave up (that is the point)

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def test_launch_reply_delayed_past_the_client_timeout_gives_one_run(stack, make_settings, bucket) -> None:
    """Issue 15, item 11. The webserver's reply to launchRun arrives after the client's read timeout.
    Fails before the fix: the fast path took the timeout for an unreachable webserver and sent
    launchRun again (and again, for 15 s): several runs of one request. Now launchRun is re-sent only
    when it provably never reached the server; otherwise the run is looked up by the request's run key,
    and if it is not there yet the claim is kept (the sensor's run-key check decides after its timeout).
    Both orders: the run created before the reply is lost, and created only after the lookup."""
    import asyncio

    from image_pipeline.domain.db import requests as repo
    from image_pipeline.domain.db.engine import make_engine, session_factory
    from image_pipeline.domain.request.fast_launch import FastLauncher
    from tests.support.pipeline import submit_to

    _, _, ui, _ = stack
    settings = make_settings(s3_bucket=bucket)
    engine = make_engine(settings.resolved_database_url)
    sessions = session_factory(engine)
    proxy = _DelayingProxy(ui, delay_s=4.0)
    csv = csv_bytes([("1", "P", ["http://127.0.0.1:9/unused.jpg"])])

    async def launch(rid: str) -> str | None:
        launcher = FastLauncher(proxy.url, sessions, claim_timeout_s=60, http_timeout_s=1.5)
        try:
            await launcher.repository()
            return await launcher.claim_and_launch(rid, "key_test", 1, 1)
        finally:
            await launcher.aclose()

    try:
        # 1. The run is created at once; only the reply is late: the lookup finds it.
        rid = submit_to(settings, sessions, csv)
        run_id = asyncio.run(launch(rid))
        time.sleep(proxy.delay_s + 1)
        runs = _runs_of(ui, rid)
        assert proxy.launches == 1 and [r["runId"] for r in runs] == [run_id], (proxy.launches, runs)

        # 2. The request itself is held: the lookup finds nothing yet, so the claim is kept, not released.
        proxy.mode, proxy.launches = "before", 0
        rid = submit_to(settings, sessions, csv)
        assert asyncio.run(launch(rid)) is None
        time.sleep(proxy.delay_s + 2)  # the held launchRun reaches the webserver and creates its run
        assert proxy.launches == 1 and len(_runs_of(ui, rid)) == 1, (proxy.launches, _runs_of(ui, rid))
        with sessions() as s:
            req = repo.get_request(s, rid)
            assert req.launch_claimed_at is not None  # the upload sensor stays away until the claim is stale
            assert not repo.claim_launches(s, [rid], 60)
    finally:
        proxy.close()
        engine.dispose()
