"""GET /metrics of an API in this process (no PROMETHEUS_MULTIPROC_DIR: the process's own registry):
upload outcomes by reason, request durations by route template, the database gauges."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from tests.support.api import AUTH, GOOD
from tests.support.metrics import moved, samples
from tests.support.services import create_pg_database, drop_pg_database


@pytest.fixture
def own_db() -> Iterator[str]:
    """A database of this test alone: the queue gauges count every request in it."""
    from image_pipeline.domain.db.engine import upgrade

    url = create_pg_database("imgpipe_metrics")
    upgrade(url)
    yield url
    drop_pg_database(url)


def scrape(client: TestClient) -> dict[tuple[str, tuple], float]:
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=")
    return samples(r.text)


def test_upload_outcomes_routes_and_queue_gauges(make_settings, bucket, own_db) -> None:
    settings = make_settings(
        s3_bucket=bucket, database_url=own_db, redis_url=None, upload_rate_limit="4/minute", max_upload_bytes=4000
    )
    with TestClient(create_app(settings)) as client:
        before = scrape(client)
        assert before[("imgpipe_requests_queued", (("status", "pending"),))] == 0
        ok = client.post("/api/upload", headers=AUTH, files={"file": ("p.csv", GOOD, "text/csv")})
        assert ok.status_code == 202
        answers = [
            client.post("/api/upload", headers=AUTH, files={"file": ("p.csv", b"S.No.\n1\n", "text/csv")}),
            client.post("/api/upload", headers=AUTH, files={"file": ("p.csv", b"\x00\x01binary", "text/csv")}),
            client.post("/api/upload", headers=AUTH, files={"file": ("p.csv", b"x" * 5000, "text/csv")}),
            client.post("/api/upload", headers=AUTH, files={"file": ("p.csv", GOOD, "text/csv")}),  # 5th: over 4/min
            client.post("/api/upload", headers={"Authorization": "Bearer wrong-key-0000"}),
        ]
        assert [a.status_code for a in answers] == [422, 415, 413, 429, 401]
        assert client.get(f"/api/status/{ok.json()['request_id']}", headers=AUTH).status_code == 200
        after = scrape(client)

    for outcome in ("accepted", "invalid", "not_csv", "too_large", "rate_limited", "unauthorized"):
        assert moved(before, after, "imgpipe_uploads_total", outcome=outcome) == 1, outcome
    status_route = (("method", "GET"), ("route", "/api/status/{request_id}"), ("status", "200"))
    # Counters are per process: earlier tests in this worker may have asked for a status too.
    assert moved(before, after, "imgpipe_http_request_duration_seconds_count", **dict(status_route)) == 1
    upload_route = (("method", "POST"), ("route", "/api/upload"), ("status", "202"))
    assert moved(before, after, "imgpipe_http_request_duration_seconds_count", **dict(upload_route)) == 1
    # Read from the database at the scrape: the accepted request waits (no daemon here).
    assert after[("imgpipe_requests_queued", (("status", "pending"),))] == 1
    assert after[("imgpipe_webhook_outbox_pending", ())] == 0 and after[("imgpipe_db_up", ())] == 1
