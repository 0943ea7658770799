"""Real services for the tests: PostgreSQL, Redis and an S3 (moto) server on loopback.

A missing service fails the test run (never skips): these tests exist to prove the product works
against the real things.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from tests.helpers import ImageServer, WebhookReceiver, free_port

PG_ADMIN_URL = os.environ.get("IMGPIPE_TEST_PG_ADMIN_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("IMGPIPE_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")  # a test-only db number


def _worker_redis_url(base: str) -> str:
    """Each pytest-xdist worker gets its own Redis db (base, base+1, ... mod 16): they flush it."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    head, _, db = base.rpartition("/")
    return f"{head}/{(int(db or 0) + int(worker.removeprefix('gw') or 0)) % 16}"


REDIS_URL = _worker_redis_url(REDIS_URL)
WEBHOOK_SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

# boto3 must never find real credentials or talk to AWS from the tests.
os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
for _v in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
    os.environ.pop(_v, None)


def _pg_admin_engine():  # noqa: ANN202
    from sqlalchemy import create_engine

    return create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})


def create_pg_database(prefix: str = "imgpipe_test") -> str:
    """A fresh database on the machine's PostgreSQL; returns its URL. Fails loudly if Postgres is down."""
    from sqlalchemy import text

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    engine = _pg_admin_engine()
    try:
        with engine.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is required for the tests: {exc}", pytrace=False)
    finally:
        engine.dispose()
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def drop_pg_database(url: str) -> None:
    from sqlalchemy import text

    name = url.rsplit("/", 1)[1]
    engine = _pg_admin_engine()
    with engine.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


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
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"Redis at {REDIS_URL} is required for the tests: {exc}", pytrace=False)
    client.flushdb()
    yield REDIS_URL
    client.flushdb()
    client.close()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on loopback, spoken to through the real S3 protocol."""
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
    srv.server.close()


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    rcv = WebhookReceiver().start()
    yield rcv
    rcv.server.close()


@pytest.fixture
def make_settings(pg_url: str, redis_url: str, s3_endpoint: str, tmp_path):  # noqa: ANN001, ANN201
    """Settings for one test: real Postgres/Redis/S3; extra keyword arguments override."""
    from image_pipeline.domain.settings import Settings

    def build(**overrides) -> Settings:  # noqa: ANN003
        values = {
            "data_dir": tmp_path / "data",
            "database_url": pg_url,
            "redis_url": redis_url,
            "s3_endpoint_url": s3_endpoint,
            "api_keys": "test-key-1,test-key-2",
            "webhook_secret": WEBHOOK_SECRET,
            "api_base_url": "http://testserver",
            "upload_rate_limit": "off",  # tests that exercise the limit set their own
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)

    return build
