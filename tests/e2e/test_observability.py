"""Metrics, traces and logs of one request through the real processes, as `make up` runs them: uvicorn
API + dagster-webserver (the fast path) + dagster-daemon with runs forked by the warm launcher, every
process writing its metrics to one PROMETHEUS_MULTIPROC_DIR, exporting spans over OTLP/HTTP to a
loopback receiver and logging JSON lines (IMGPIPE_LOG_FORMAT=json)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.inputs import csv_bytes, make_image
from tests.support.metrics import moved, samples
from tests.support.spans import OtlpReceiver, find, render, shape, tree
from tests.support.stack import KEY, Stack, running_stack

AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    r = OtlpReceiver()
    yield r
    r.close()


@pytest.fixture
def stack(tmp_path, redis_url, s3_endpoint, bucket, image_server, webhook_receiver, receiver) -> Iterator[Stack]:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = {
        "IMGPIPE_REDIS_URL": redis_url,
        "IMGPIPE_S3_BUCKET": bucket,
        "IMGPIPE_S3_ENDPOINT_URL": s3_endpoint,
        "IMGPIPE_FETCH_ALLOW": f"{image_server.allow},{webhook_receiver.allow}",
        "IMGPIPE_LOG_FORMAT": "json",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "200",  # the API's batch of spans goes out within 0.2 s
    }
    with running_stack(tmp_path, env, webserver=True, warm_launcher=True) as s:
        yield s


def scrape(api: str) -> dict[tuple[str, tuple], float]:
    """Every sample of GET /metrics, keyed by (name, sorted labels)."""
    r = httpx.get(f"{api}/metrics", timeout=30)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return samples(r.text)


def json_lines(text: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def test_metrics_traces_and_logs_of_one_request(stack, image_server, webhook_receiver, receiver) -> None:
    urls = [image_server.add(f"/o/{i}.jpg", make_image("JPEG", (640, 480), seed=i)) for i in range(2)]
    missing = image_server.url("/o/missing.jpg")  # 404: a failed URL of class `permanent`
    before = scrape(stack.api)

    r = httpx.post(
        f"{stack.api}/api/upload",
        headers=AUTH,
        timeout=30,
        files={"file": ("p.csv", csv_bytes([("1", "Shoe", urls), ("2", "Hat", [missing])]))},
        data={"webhook_url": webhook_receiver.url},
    )
    assert r.status_code == 202, r.text
    rid = r.json()["request_id"]
    refused = httpx.post(f"{stack.api}/api/upload", headers={"Authorization": "Bearer not-a-valid-key-000"})
    assert refused.status_code == 401
    try:
        webhook_receiver.wait_for(1, timeout=120)
    except AssertionError:
        pytest.fail("no webhook; daemon log tail:\n" + stack.log_tail("daemon"))

    # The webhook's attempt is counted once its answer is recorded, just after the receiver saw it.
    deadline = time.monotonic() + 30
    while True:
        after = scrape(stack.api)
        if moved(before, after, "imgpipe_webhook_attempts_total", outcome="delivered") or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    print("\n/metrics after one request:\n" + httpx.get(f"{stack.api}/metrics").text)

    # Counted in the API process...
    assert moved(before, after, "imgpipe_uploads_total", outcome="accepted") == 1
    assert moved(before, after, "imgpipe_uploads_total", outcome="unauthorized") == 1
    route = (("method", "POST"), ("route", "/api/upload"), ("status", "202"))
    assert after[("imgpipe_http_request_duration_seconds_count", route)] >= 1
    # ...and in the run's process, added up by the API's /metrics.
    assert moved(before, after, "imgpipe_images_total", status="done", failure_class="none") == 2
    assert moved(before, after, "imgpipe_images_total", status="failed", failure_class="permanent") == 1
    assert moved(before, after, "imgpipe_image_bytes_total", direction="in") > 0
    assert 0 < moved(before, after, "imgpipe_image_bytes_total", direction="out")
    for stage in ("fetch", "decode", "encode", "store"):
        assert moved(before, after, "imgpipe_stage_seconds_count", stage=stage) >= 2, stage
    assert moved(before, after, "imgpipe_request_duration_seconds_count", status="partially_failed") == 1
    assert moved(before, after, "imgpipe_webhook_attempts_total", outcome="delivered") == 1
    # Gauges read from the database at the scrape: nothing queued, nothing owed any more.
    assert after[("imgpipe_db_up", ())] == 1
    assert after[("imgpipe_requests_queued", (("status", "pending"),))] == 0
    assert after[("imgpipe_webhook_outbox_pending", ())] == 0

    # One trace: the upload's span, the run (its span id derived from the run id) and its steps in the
    # run worker process, the chunk and the webhook delivery.
    spans = receiver.wait_for("run", timeout=60)
    uploads = [s for s in receiver.wait_for("POST /api/upload", 30) if s.name == "POST /api/upload"]
    [upload] = [s for s in uploads if s.attributes.get("request_id") == rid]  # not the refused one
    assert upload.service == "image-pipeline-api"
    [root] = tree(spans, upload.trace_id)
    print("\nspan tree of the request:\n" + render([root]))
    # The run is launched by the upload's background task (FastAPI's own span, where FastAPI has one).
    [run] = find(root, "run")
    assert run.service == "image-pipeline-run" and run.attributes["request_id"] == rid
    steps = run.children
    assert [s.name for s in steps] == [
        "step validated_csv",
        "step plan_image_chunks",
        "step compress_chunk",
        "step summarize_chunks",
        "step output_csv",
        "step request_notification",
    ]
    assert {s.service for s in steps} == {"image-pipeline-run"}
    assert shape(steps[2]) == ("step compress_chunk", (("chunk", ()),))
    assert shape(steps[5]) == ("step request_notification", (("webhook.delivery", ()),))
    run_id = steps[0].attributes["run_id"]
    assert all(s.attributes["request_id"] == rid and s.attributes["run_id"] == run_id for s in steps)

    # JSON logs: one object per line, with what is known where the line is written.
    api_log = stack.log_tail("api", 200_000)
    assert all(line.startswith("{") for line in api_log.splitlines() if line), api_log[-2000:]  # uvicorn's too
    api_lines = json_lines(api_log)
    [access] = [
        x for x in api_lines if x["logger"] == "uvicorn.access" and 'POST /api/upload HTTP/1.1" 202' in x["message"]
    ]
    assert access["request_id"] == rid and "color_message" not in access
    [accepted] = [x for x in api_lines if x["message"].startswith("upload accepted")]
    assert accepted["request_id"] == rid and accepted["tenant"].startswith("key_") and accepted["level"] == "INFO"
    run_lines = [x for x in json_lines(stack.log_tail("daemon", 500_000)) if x.get("request_id") == rid]
    chunk_line = next(x for x in run_lines if x["message"].startswith("chunk 0:"))
    assert chunk_line["run_id"] == run_id and chunk_line["tenant"] == accepted["tenant"]
    assert any(x["message"].startswith(f"request {rid}: partially_failed") for x in run_lines)
    print("\nJSON log lines:\n" + "\n".join(json.dumps(x) for x in (accepted, chunk_line)))
