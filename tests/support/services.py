"""The machine's PostgreSQL and Redis as the tests use them, and the webhook secret every test process
signs with. A missing service fails the run (never skips)."""

from __future__ import annotations

import os
import uuid

import pytest

PG_ADMIN_URL = os.environ.get("IMGPIPE_TEST_PG_ADMIN_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("IMGPIPE_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")  # a test-only db number


def _worker_redis_url(base: str) -> str:
    """Each pytest-xdist worker gets its own Redis db (base, base+1, ... mod 16): they flush it."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    head, _, db = base.rpartition("/")
    return f"{head}/{(int(db or 0) + int(worker.removeprefix('gw') or 0)) % 16}"


REDIS_URL = _worker_redis_url(REDIS_URL)
WEBHOOK_SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def pg_admin_engine():
    from sqlalchemy import create_engine

    return create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})


def create_pg_database(prefix: str = "imgpipe_test") -> str:
    """A fresh database on the machine's PostgreSQL; returns its URL. Fails loudly if Postgres is down."""
    from sqlalchemy import text

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    engine = pg_admin_engine()
    try:
        with engine.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is required for the tests: {exc}", pytrace=False)
    finally:
        engine.dispose()
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def drop_pg_database(url: str) -> None:
    from sqlalchemy import text

    name = url.rsplit("/", 1)[1]
    engine = pg_admin_engine()
    with engine.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()
