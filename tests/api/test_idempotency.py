"""Idempotency-Key on POST /api/upload against real Postgres: replays, conflicts, expiry, concurrency."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from image_pipeline.domain.clock import utcnow
from image_pipeline.domain.db.engine import make_engine, session_factory, upgrade
from image_pipeline.domain.db.models import ImageRequest
from image_pipeline.domain.db.requests import create_request
from image_pipeline.domain.objects.s3 import make_s3_client
from tests.support.api import AUTH, OTHER
from tests.support.inputs import csv_bytes
from tests.support.services import create_pg_database, drop_pg_database


@pytest.fixture(scope="module")
def own_db() -> Iterator[str]:
    """These tests leave pending requests behind: keep them out of the shared database that the
    end-to-end daemon drains."""
    url = create_pg_database("imgpipe_idem")
    upgrade(url)
    yield url
    drop_pg_database(url)


@pytest.fixture
def settings(make_settings, bucket, webhook_receiver, own_db):
    return make_settings(s3_bucket=bucket, fetch_allow=webhook_receiver.allow, database_url=own_db)


CSV = csv_bytes([("1", "Shoe", ["https://img.example/a.jpg"])])
OTHER_CSV = csv_bytes([("1", "Shoe", ["https://img.example/b.jpg"])])


def post(client, key: str | None, body: bytes = CSV, webhook_url: str | None = None, headers=AUTH):
    h = dict(headers, **({"Idempotency-Key": key} if key else {}))
    data = {"webhook_url": webhook_url} if webhook_url else {}
    return client.post("/api/upload", headers=h, files={"file": ("p.csv", body, "text/csv")}, data=data)


def rows_with_key(settings, key: str) -> list[ImageRequest]:
    engine = make_engine(settings.resolved_database_url)
    with session_factory(engine)() as s:
        rows = list(s.scalars(select(ImageRequest).where(ImageRequest.idempotency_key == key)).all())
    engine.dispose()
    return rows


def test_same_key_same_body_returns_the_original(client, settings) -> None:
    key = uuid.uuid4().hex
    first = post(client, key)
    assert first.status_code == 202 and "idempotent-replayed" not in first.headers
    again = post(client, key)
    assert again.status_code == 202, again.text
    assert again.json()["request_id"] == first.json()["request_id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert len(rows_with_key(settings, key)) == 1
    # Without a key every upload is a new request.
    assert post(client, None).json()["request_id"] != post(client, None).json()["request_id"]


def test_same_key_different_body_is_422(client, settings, webhook_receiver) -> None:
    key = uuid.uuid4().hex
    rid = post(client, key).json()["request_id"]
    other_file = post(client, key, OTHER_CSV)
    assert other_file.status_code == 422 and other_file.json()["errors"][0]["column"] == "Idempotency-Key"
    assert rid in other_file.json()["errors"][0]["message"]
    assert post(client, key, webhook_url=webhook_receiver.url).status_code == 422
    assert [r.id for r in rows_with_key(settings, key)] == [rid]


def test_keys_are_per_api_key(client, settings) -> None:
    key = uuid.uuid4().hex
    mine, theirs = post(client, key), post(client, key, headers=OTHER)
    assert mine.status_code == theirs.status_code == 202
    assert mine.json()["request_id"] != theirs.json()["request_id"]


def test_key_expires_after_the_window(client, settings) -> None:
    from datetime import timedelta

    key = uuid.uuid4().hex
    old = post(client, key).json()["request_id"]
    engine = make_engine(settings.resolved_database_url)
    with engine.begin() as c:
        c.execute(update(ImageRequest).where(ImageRequest.id == old).values(created_at=utcnow() - timedelta(hours=25)))
    engine.dispose()
    new = post(client, key, OTHER_CSV)  # a day later the key may carry a different upload
    assert new.status_code == 202 and new.json()["request_id"] != old
    assert [r.id for r in rows_with_key(settings, key)] == [new.json()["request_id"]]


def test_bad_keys_are_refused(client) -> None:
    assert post(client, "x" * 256).status_code == 400
    assert post(client, "has space").status_code == 400


def test_concurrent_duplicates_over_http_make_one_request(
    client, settings, bucket, s3_endpoint, webhook_receiver
) -> None:
    key, n = uuid.uuid4().hex, 8
    barrier = threading.Barrier(n)

    def go(_: int):
        barrier.wait()
        return post(client, key, webhook_url=webhook_receiver.url)

    with ThreadPoolExecutor(n) as pool:
        answers = list(pool.map(go, range(n)))
    assert [a.status_code for a in answers] == [202] * n, [a.text for a in answers]
    assert len({a.json()["request_id"] for a in answers}) == 1
    [row] = rows_with_key(settings, key)
    # The losers' input files were removed: only the winner's input is stored.
    listed = make_s3_client(s3_endpoint, "us-east-1").list_objects_v2(Bucket=bucket, Prefix="requests/")
    assert [o["Key"] for o in listed.get("Contents", [])] == [f"requests/{row.id}/input.csv"]


def test_the_database_constraint_settles_racing_inserts(settings) -> None:
    """Threads inserting the same (owner, key) at the same moment: exactly one row, the rest refused."""
    engine = make_engine(settings.resolved_database_url)
    sessions = session_factory(engine)
    key, n = uuid.uuid4().hex, 8
    barrier = threading.Barrier(n)

    def insert(_: int) -> str:
        with sessions() as s:
            barrier.wait()
            try:
                create_request(
                    s,
                    request_id=str(uuid.uuid4()),
                    owner="key_race",
                    input_key="x",
                    webhook_url=None,
                    filename=None,
                    row_count=1,
                    url_count=1,
                    idempotency_key=key,
                    request_hash="h",
                )
                return "created"
            except IntegrityError:
                return "refused"

    with ThreadPoolExecutor(n) as pool:
        outcomes = list(pool.map(insert, range(n)))
    assert sorted(outcomes) == ["created"] + ["refused"] * (n - 1)
    with sessions() as s:
        assert s.scalar(select(func.count()).where(ImageRequest.idempotency_key == key)) == 1
    engine.dispose()


def test_force_is_validated_frozen_and_part_of_the_fingerprint(client, settings) -> None:
    def upload(key: str, force: str | None):
        data = {"force": force} if force is not None else {}
        h = dict(AUTH, **{"Idempotency-Key": key})
        return client.post("/api/upload", headers=h, files={"file": ("p.csv", CSV, "text/csv")}, data=data)

    refused = upload(uuid.uuid4().hex, "maybe")
    assert refused.status_code == 422 and refused.json()["errors"][0]["column"] == "force"
    key = uuid.uuid4().hex
    forced = upload(key, "true")
    assert forced.status_code == 202
    assert upload(key, "TRUE").json()["request_id"] == forced.json()["request_id"]  # the same body
    assert upload(key, "false").status_code == 422  # the key was used with force: another body
    plain = uuid.uuid4().hex
    assert upload(plain, None).status_code == 202
    assert upload(plain, "false").status_code == 202  # false is the default: the same body
    assert [r.force for r in rows_with_key(settings, key)] == [True]
    assert [r.force for r in rows_with_key(settings, plain)] == [False]
