"""Cancel through HTTP against real daemon runs: API + dagster-webserver (the API terminates runs through
its GraphQL API) + dagster-daemon with Dagster's default run launcher, on PostgreSQL, Swift's S3, Redis,
and a slow loopback image server so the run is mid-flight when the cancel comes. The instance runs one
request at a time, so a second request waits queued behind a first.

A running request stops: its run ends canceled, no image is fetched after that, the images already
stored stay stored and listed, the caller gets exactly one signed `request.canceled` webhook; a second
cancel answers the same. A queued request never starts. A finished one is 409.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from image_pipeline.domain.objects.s3 import make_s3_client
from tests.support.fault_checks import final_webhooks, one_request_csv, stored_images
from tests.support.fault_stack import slow_images, wait_until
from tests.support.servers import ImageServer, WebhookReceiver
from tests.support.services import WEBHOOK_SECRET
from tests.support.stack import KEY, Stack, dagster_home, running_stack

pytestmark = pytest.mark.timeout(480)  # the first test carries the module stack's start-up

AUTH = {"Authorization": f"Bearer {KEY}"}
ENDED = {"SUCCESS", "FAILURE", "CANCELED"}


class Env:
    def __init__(self, stack: Stack, images: ImageServer, receiver: WebhookReceiver, s3: str, bucket: str) -> None:
        self.stack, self.images, self.receiver, self.s3, self.bucket = stack, images, receiver, s3, bucket

    def upload(self, n: int, delay_s: float) -> tuple[str, list[str]]:
        urls = slow_images(self.images, n, delay_s, prefix=f"/{uuid.uuid4().hex[:8]}")
        r = httpx.post(
            f"{self.stack.api}/api/upload",
            headers=AUTH,
            timeout=30,
            files={"file": ("p.csv", one_request_csv(urls), "text/csv")},
            data={"webhook_url": self.receiver.url},
        )
        assert r.status_code == 202, r.text
        return r.json()["request_id"], urls

    def status(self, rid: str) -> dict:
        return httpx.get(f"{self.stack.api}/api/status/{rid}", headers=AUTH, timeout=30).json()

    def wait_status(self, rid: str, pred, timeout: float = 180) -> dict:
        last: list[dict] = [{}]

        def check() -> bool:
            last[0] = self.status(rid)
            return pred(last[0])

        wait_until(check, timeout, lambda: f"status stuck at {last[0]}", self.tail)
        return last[0]

    def cancel(self, rid: str) -> httpx.Response:
        return httpx.post(f"{self.stack.api}/api/requests/{rid}/cancel", headers=AUTH, timeout=30)

    def runs(self, rid: str) -> list[dict]:
        query = """query Runs($v: String!) { runsOrError(filter: {tags: [{key: "imgpipe/request_id", value: $v}]}) {
          ... on Runs { results { runId status } } } }"""
        r = httpx.post(f"{self.stack.ui}/graphql", json={"query": query, "variables": {"v": rid}}, timeout=30)
        return r.json()["data"]["runsOrError"]["results"]

    def wait_runs(self, rid: str, statuses: set[str], timeout: float = 120) -> list[dict]:
        wait_until(
            lambda: bool(self.runs(rid)) and all(r["status"] in statuses for r in self.runs(rid)),
            timeout,
            lambda: f"runs of {rid}: {self.runs(rid)}",
            self.tail,
        )
        return self.runs(rid)

    def hits(self, urls: list[str]) -> int:
        paths = {urlsplit(u).path for u in urls}
        return sum(1 for h in list(self.images.hits) if h in paths)

    def tail(self) -> str:
        return "\n".join(f"--- {n}\n{self.stack.log_tail(n, 3000)}" for n in ("api", "daemon", "webserver"))


@pytest.fixture(scope="module")
def env(tmp_path_factory, s3_endpoint, redis_url) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("cancel")
    bucket = f"imgpipe-{uuid.uuid4().hex[:12]}"
    make_s3_client(s3_endpoint, "us-east-1").create_bucket(Bucket=bucket)
    images, receiver = ImageServer().start(), WebhookReceiver().start()
    # The repo's dagster.yaml (Dagster's default run launcher), one run at a time.
    (tmp / "instance").mkdir()
    instance = dagster_home(tmp / "instance", overrides={"concurrency": {"runs": {"max_concurrent_runs": 1}}})
    settings = {
        "IMGPIPE_REDIS_URL": redis_url,
        "IMGPIPE_S3_BUCKET": bucket,
        "IMGPIPE_S3_ENDPOINT_URL": s3_endpoint,
        "IMGPIPE_FETCH_ALLOW": f"{images.allow},{receiver.allow}",
        "IMGPIPE_FETCH_CONCURRENCY": "2",
        "IMGPIPE_PER_HOST_CONCURRENCY": "2",
        "IMGPIPE_WEBHOOK_RETRY_SCHEDULE": "1,1,2",
    }
    try:
        with running_stack(tmp, settings, webserver=True, instance_yaml=instance / "dagster.yaml") as stack:
            yield Env(stack, images, receiver, s3_endpoint, bucket)
    finally:
        images.close()
        receiver.close()


def test_cancel_a_running_request(env: Env) -> None:
    rid, urls = env.upload(12, 1.0)  # two at a time, a second each: about 6 s of downloads
    env.wait_status(rid, lambda s: s["status"] == "processing" and s["progress"]["done"] >= 2)

    r = env.cancel(rid)
    assert r.status_code == 200, r.text
    canceled = r.json()
    assert canceled["status"] == "canceled" and canceled["output_csv_url"] is None
    t0 = time.monotonic()
    [run] = env.wait_runs(rid, ENDED, timeout=90)
    stopped_after = time.monotonic() - t0
    print(f"\nrun {run['runId']} ended {run['status']} {stopped_after:.1f} s after the cancel")
    assert run["status"] == "CANCELED"
    fetched = env.hits(urls)
    assert fetched < len(urls), "every image was fetched: the run did not stop"

    [hook] = final_webhooks(env.receiver, rid)  # waits a little longer for any duplicate
    event = Webhook(WEBHOOK_SECRET).verify(hook.body, hook.headers)
    assert event["type"] == "request.canceled" and event["status"] == "canceled"
    assert env.hits(urls) == fetched, "images were fetched after the run ended"

    doc = env.status(rid)
    assert doc["status"] == "canceled" and doc["error"] == "canceled by its owner"
    results = httpx.get(f"{env.stack.api}/api/requests/{rid}/results", headers=AUTH, timeout=30).json()
    images = [i for p in results["products"] for i in p["images"]]
    done = [i for i in images if i["status"] == "done"]
    assert len(done) == doc["progress"]["done"] >= 2 and all(i["output_url"] for i in done)
    # Stored work is kept and listed: every image done is stored; at most the downloads in flight when
    # the run was interrupted (IMGPIPE_FETCH_CONCURRENCY) were stored without their result landing.
    stored = set(stored_images(env.s3, env.bucket, rid))
    listed = {"requests/" + i["output_url"].split("/requests/", 1)[1] for i in done}
    assert listed <= stored and len(stored - listed) <= 2, (listed, stored)
    assert {i["status"] for i in images} <= {"done", "pending", "failed"}

    again = env.cancel(rid)
    assert (again.status_code, again.json()) == (200, doc)
    log = httpx.get(f"{env.stack.api}/api/requests/{rid}/webhooks", headers=AUTH, timeout=30).json()
    assert [d["event_type"] for d in log["deliveries"]] == ["request.canceled"]


def test_cancel_a_queued_request_and_a_finished_one(env: Env) -> None:
    ahead, _ = env.upload(8, 1.0)
    env.wait_runs(ahead, {"STARTED"})
    rid, urls = env.upload(2, 0.1)
    env.wait_runs(rid, {"QUEUED"})

    r = env.cancel(rid)
    assert r.status_code == 200 and r.json()["status"] == "canceled", r.text
    [run] = env.wait_runs(rid, ENDED, timeout=60)
    assert run["status"] == "CANCELED"
    [hook] = final_webhooks(env.receiver, rid)
    assert Webhook(WEBHOOK_SECRET).verify(hook.body, hook.headers)["type"] == "request.canceled"
    assert env.hits(urls) == 0  # it never started

    final = env.wait_status(ahead, lambda s: s["status"] == "completed")
    assert final["progress"] == {"total": 8, "done": 8, "failed": 0}
    refused = env.cancel(ahead)
    assert refused.status_code == 409
    assert refused.json() == {
        "detail": "request is completed; only a pending or processing request can be canceled",
        "errors": [],
    }
