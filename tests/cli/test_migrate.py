"""`imgpipe migrate`: the one-shot step compose's `migrate` service and the Helm hook Job run, and the API
that, with IMGPIPE_MIGRATE_ON_START=false, leaves the schema to it. Real PostgreSQL, a real Dagster
instance (the repo's dagster.yaml on PostgreSQL) and the suite's S3 server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import inspect

from api.main import create_app
from image_pipeline.domain.db.engine import make_engine
from image_pipeline.domain.objects.s3 import make_s3_client
from tests.support.paths import ROOT
from tests.support.services import create_pg_database, drop_pg_database

IMGPIPE = str(Path(sys.executable).parent / "imgpipe")


@pytest.fixture
def fresh_db():
    url = create_pg_database("imgpipe_migrate")
    yield url
    drop_pg_database(url)


def tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_migrate_prepares_the_app_database_dagster_and_the_bucket(fresh_db, tmp_path, s3_endpoint) -> None:
    dagster_db = create_pg_database("imgpipe_migrate_dagster")
    try:
        home = tmp_path / "dagster_home"
        home.mkdir()
        shutil.copyfile(ROOT / "dagster.yaml", home / "dagster.yaml")  # what the image's DAGSTER_HOME holds
        bucket = f"imgpipe-{uuid.uuid4().hex[:12]}"
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "IMGPIPE_DAGSTER_PG_URL": dagster_db,
            "IMGPIPE_DATABASE_URL": fresh_db,
            "IMGPIPE_S3_BUCKET": bucket,
            "IMGPIPE_S3_ENDPOINT_URL": s3_endpoint,
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        }
        (tmp_path / "metrics").mkdir()
        (tmp_path / "metrics" / "counter_4242.db").write_bytes(b"a previous start's process")
        cmd = [IMGPIPE, "migrate", "--dagster", "--create-bucket", "--reset-metrics"]
        first = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240)
        assert first.returncode == 0, first.stderr[-3000:]
        assert f"bucket {bucket} created" in first.stdout
        assert "old file(s) removed" in first.stdout  # the stale file and this process's own, made at import
        assert not (tmp_path / "metrics" / "counter_4242.db").exists()
        assert {"imgpipe_alembic_version", "requests", "api_keys"} <= tables(fresh_db)
        assert {"runs", "event_logs", "concurrency_limits"} <= tables(dagster_db)
        make_s3_client(s3_endpoint, "us-east-1").head_bucket(Bucket=bucket)  # raises when it is not there

        again = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240)
        assert again.returncode == 0, again.stderr[-3000:]  # a one-shot that is run twice changes nothing
        assert f"bucket {bucket} exists" in again.stdout
    finally:
        drop_pg_database(dagster_db)


def test_api_leaves_migrations_to_the_one_shot_when_told(make_settings, fresh_db) -> None:
    with TestClient(create_app(make_settings(database_url=fresh_db, migrate_on_start=False))) as c:
        assert c.get("/healthz").status_code == 200
    assert "imgpipe_alembic_version" not in tables(fresh_db)
    with TestClient(create_app(make_settings(database_url=fresh_db))):  # the default, as `uvicorn` starts it
        pass
    assert "imgpipe_alembic_version" in tables(fresh_db)


def test_migrate_on_start_reads_the_environment(monkeypatch) -> None:
    from image_pipeline.domain.settings import Settings

    monkeypatch.setenv("IMGPIPE_MIGRATE_ON_START", "false")
    assert Settings(_env_file=None).migrate_on_start is False
    monkeypatch.delenv("IMGPIPE_MIGRATE_ON_START")
    assert Settings(_env_file=None).migrate_on_start is True
