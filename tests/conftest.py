"""Real services for the tests: PostgreSQL, Redis and an S3-compatible server (OpenStack Swift's
s3api, tests/support/swift.py) on loopback, and the shared fixtures built on them. Helpers that are
not fixtures are in tests/support/.

A missing service fails the test run (never skips): these tests exist to prove the product works
against the real things.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from tests.support.servers import ImageServer, WebhookReceiver, free_port
from tests.support.services import REDIS_URL, WEBHOOK_SECRET, create_pg_database, drop_pg_database
from tests.support.swift import ACCESS_KEY, REGION, SECRET_KEY, SwiftS3, SwiftUnavailable, swift_venv

# boto3 must never find real credentials or talk to AWS from the tests. These are the test Swift's
# (tempauth's test:tester); moto takes any. Processes the tests start inherit them.
os.environ.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_DEFAULT_REGION=REGION)
for _v in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
    os.environ.pop(_v, None)


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """The app database for this test session (migrated to head)."""
    from image_pipeline.domain.db.engine import upgrade

    url = create_pg_database()
    upgrade(url)
    yield url
    drop_pg_database(url)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_timeout=3)
    try:
        client.ping()
    except Exception as exc:
        pytest.fail(f"Redis at {REDIS_URL} is required for the tests: {exc}", pytrace=False)
    client.flushdb()
    yield REDIS_URL
    client.flushdb()
    client.close()


@pytest.fixture(scope="session")
def swift(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SwiftS3]:
    """OpenStack Swift with s3api, over https: the suite's S3. It checks signatures and checksums as AWS
    does, which moto did not. Started on first use, stopped at the end of the session; a Swift that
    cannot be installed or started fails the tests that need it.

    One per xdist worker, not one shared through a file lock: a worker's server lives and dies with
    the worker (parent-death signal, process groups), so no worker can stop it under another and no
    reference count or keeper process is needed; its cost is ~250 MB and ~4 s per worker (the
    install, the slow part, is shared: one cached venv, made under a file lock).
    AWS_CA_BUNDLE (its self-signed certificate) is set for this process and the processes tests start.
    """
    try:
        # Under pytest's base temp: what a killed session leaves there is removed with its old runs.
        server = SwiftS3(swift_venv(), tmp_path_factory.mktemp("swift")).start()
    except SwiftUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    previous = os.environ.get("AWS_CA_BUNDLE")
    os.environ["AWS_CA_BUNDLE"] = server.ca_bundle
    yield server
    server.stop()
    if previous is None:
        os.environ.pop("AWS_CA_BUNDLE", None)
    else:
        os.environ["AWS_CA_BUNDLE"] = previous


@pytest.fixture(scope="session")
def s3_endpoint(swift: SwiftS3) -> str:
    """The S3 endpoint every storage test and stack uses: the session's Swift."""
    return swift.endpoint


@pytest.fixture(scope="session")
def refusing_s3_endpoint(swift: SwiftS3) -> str:
    """The session's Swift through a proxy that refuses uploads carrying boto3's default checksums
    (501 NotImplemented), like some S3-compatible stores: what IMGPIPE_S3_CHECKSUM=when_required is for.
    Same backends as `s3_endpoint`: a `bucket` is there too."""
    return swift.refusing_endpoint()


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto server on loopback, only for AWS APIs Swift does not speak (ECS)."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def bucket(s3_endpoint: str) -> str:
    from image_pipeline.domain.objects.s3 import make_s3_client

    name = f"imgpipe-{uuid.uuid4().hex[:12]}"
    make_s3_client(s3_endpoint, "us-east-1").create_bucket(Bucket=name)
    return name


@pytest.fixture
def image_server() -> Iterator[ImageServer]:
    srv = ImageServer().start()
    yield srv
    srv.close()


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    rcv = WebhookReceiver().start()
    yield rcv
    rcv.close()


@pytest.fixture
def make_settings(pg_url: str, redis_url: str, s3_endpoint: str, tmp_path):
    """Settings for one test: real Postgres/Redis/S3; extra keyword arguments override."""
    from image_pipeline.domain.settings import Settings

    def build(**overrides) -> Settings:
        values = {
            "data_dir": tmp_path / "data",
            "database_url": pg_url,
            "redis_url": redis_url,
            "s3_endpoint_url": s3_endpoint,
            "api_keys": "test-key-1,test-key-2",
            "api_key_min_chars": 10,  # the suite's short test keys (production default: 32)
            "webhook_secret": WEBHOOK_SECRET,
            "api_base_url": "http://testserver",
            "upload_rate_limit": "off",  # tests that exercise the limit set their own
            "replay_rate_limit": "off",  # (the counts live in the one Redis every test worker shares)
            # Per-request output keys, as these tests were written for; the sync memory's own tests
            # (test_sync.py in tests/domain/request, tests/defs and tests/e2e) turn it on.
            "sync_memory": False,
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)

    return build


# --- the pipeline in the test process (tests/defs, tests/domain): settings, resources, an instance ------


@pytest.fixture
def settings(make_settings, bucket, image_server, webhook_receiver):
    return make_settings(s3_bucket=bucket, fetch_allow=f"{image_server.allow},{webhook_receiver.allow}")


@pytest.fixture
def resources(settings, monkeypatch):
    from image_pipeline.defs.resources import build_resources

    monkeypatch.setenv("IMGPIPE_WEBHOOK_SECRET", settings.webhook_secret)
    return build_resources(settings)


@pytest.fixture
def instance():
    import dagster as dg

    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture
def submit(settings):
    """Accept a request the way the API does: store the CSV object, then record the row."""
    from image_pipeline.domain.db.engine import make_engine, session_factory
    from tests.support.pipeline import submit_to

    engine = make_engine(settings.resolved_database_url)
    sessions = session_factory(engine)

    def _submit(csv: bytes, webhook_url: str | None = None, owner: str = "key_test", profile=None) -> str:
        return submit_to(settings, sessions, csv, webhook_url, owner, profile)

    yield _submit
    engine.dispose()
