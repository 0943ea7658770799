"""Every Dagster instance config we ship loads: storage, run coordinator, concurrency limits, run
monitoring and the run launcher (ECS: resolved against an ECS API on a moto server; Celery:
CeleryRunLauncher from dagster-celery)."""

import json
import shutil
import subprocess
import sys

import boto3
import pytest

from tests.support.paths import ROOT
from tests.support.services import create_pg_database, drop_pg_database

PROBE = """
import json, dagster as dg
i = dg.DagsterInstance.get()
c = i.get_concurrency_config()
print(json.dumps({
    "launcher": type(i.run_launcher).__name__,
    "task_definition": getattr(i.run_launcher, "task_definition", None),
    "run_queue": getattr(i.run_launcher, "default_queue", None),
    "coordinator": type(i.run_coordinator).__name__,
    "dequeue_s": getattr(i.run_coordinator, "dequeue_interval_seconds", None),
    "max_runs": c.run_queue_config.max_concurrent_runs,
    "tag_limits": [t["key"] for t in c.run_queue_config.tag_concurrency_limits],
    "pool_limit": c.pool_config.default_pool_limit,
    "free_slots": i.run_monitoring_settings.get("free_slots_after_run_end_seconds"),
    "python_log_level": i.python_log_level,
    "storage": [type(x).__name__ for x in (i.run_storage, i.event_log_storage, i.schedule_storage)],
}))
"""


def load_instance(yaml_path, tmp_path, env: dict[str, str]) -> dict:
    home = tmp_path / "home"
    home.mkdir()
    shutil.copyfile(yaml_path, home / "dagster.yaml")
    proc = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={"PATH": "/usr/bin:/bin", "DAGSTER_HOME": str(home), **env},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture
def dagster_pg():
    url = create_pg_database("imgpipe_instance_cfg")
    yield url
    drop_pg_database(url)


def test_deployment_instance(tmp_path, dagster_pg) -> None:
    got = load_instance(ROOT / "dagster.yaml", tmp_path, {"IMGPIPE_DAGSTER_PG_URL": dagster_pg})
    assert got["coordinator"] == "QuickQueuedRunCoordinator" and got["launcher"] == "DefaultRunLauncher"
    assert got["dequeue_s"] == 0.5
    assert got["max_runs"] == 8 and got["tag_limits"] == ["imgpipe/owner", "imgpipe/request_id"]
    assert got["pool_limit"] == 8 and got["free_slots"] == 30
    assert got["python_log_level"] == "INFO"  # no DEBUG rows per chunk in the event log


def test_embedded_instance(tmp_path) -> None:
    got = load_instance(ROOT / "deploy/embedded/dagster.yaml", tmp_path, {})
    assert got["coordinator"] == "QuickQueuedRunCoordinator" and got["free_slots"] == 30
    assert got["dequeue_s"] == 0.5 and got["launcher"] == "WarmForkRunLauncher"


def test_ecs_instance_resolves_its_launcher(tmp_path, dagster_pg, moto_endpoint) -> None:
    aws = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    ecs = boto3.client("ecs", endpoint_url=moto_endpoint, **{k.lower(): v for k, v in aws.items() if "KEY" in k})
    arn = ecs.register_task_definition(
        family="imgpipe-code",
        containerDefinitions=[{"name": "run", "image": "image-pipeline:latest", "memory": 512}],
    )["taskDefinition"]["taskDefinitionArn"]
    env = {**aws, "AWS_ENDPOINT_URL": moto_endpoint, "IMGPIPE_DAGSTER_PG_URL": dagster_pg}
    got = load_instance(ROOT / "deploy/ecs/dagster.yaml", tmp_path, {**env, "IMGPIPE_ECS_TASK_DEFINITION": arn})
    assert got["launcher"] == "EcsRunLauncher" and got["task_definition"] == arn
    assert got["pool_limit"] == 32 and got["free_slots"] == 60


def test_celery_launcher_instance_resolves_its_launcher(tmp_path, dagster_pg) -> None:
    env = {
        "IMGPIPE_DAGSTER_PG_URL": dagster_pg,
        "IMGPIPE_CELERY_BROKER_URL": "pyamqp://guest:guest@127.0.0.1:5672//",
        "IMGPIPE_CELERY_BACKEND_URL": "redis://127.0.0.1:6379/15",
        "IMGPIPE_CELERY_RUN_QUEUE": "imgpipe-runs",
    }
    got = load_instance(ROOT / "deploy/celery/dagster.yaml", tmp_path, env)
    assert got["launcher"] == "CeleryRunLauncher" and got["run_queue"] == "imgpipe-runs"
    assert got["coordinator"] == "QuickQueuedRunCoordinator" and got["free_slots"] == 30
    assert got["storage"] == [
        "PooledPostgresRunStorage",
        "PooledPostgresEventLogStorage",
        "PooledPostgresScheduleStorage",
    ]


def test_celery_launcher_refuses_an_rpc_result_backend(tmp_path, dagster_pg) -> None:
    home = tmp_path / "home"
    home.mkdir()
    shutil.copyfile(ROOT / "deploy/celery/dagster.yaml", home / "dagster.yaml")
    env = {
        "PATH": "/usr/bin:/bin",
        "DAGSTER_HOME": str(home),
        "IMGPIPE_DAGSTER_PG_URL": dagster_pg,
        "IMGPIPE_CELERY_BROKER_URL": "pyamqp://guest:guest@127.0.0.1:5672//",
        "IMGPIPE_CELERY_BACKEND_URL": "rpc://",
        "IMGPIPE_CELERY_RUN_QUEUE": "imgpipe-runs",
    }
    proc = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True)
    assert proc.returncode != 0
    assert "needs a result backend every process can read" in proc.stderr


def test_celery_instance_is_the_deployment_instance_plus_its_launcher() -> None:
    """The same instance as dagster.yaml but for the launcher and the storage, which is the same
    PostgreSQL database through the pooled storage class (image_pipeline/dagster_plugins/pooled_postgres.py)."""
    import yaml

    celery = yaml.safe_load((ROOT / "deploy/celery/dagster.yaml").read_text())
    deployment = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    assert celery.pop("run_launcher")["class"] == "CeleryRunLauncher"
    storage = celery.pop("storage")["custom"]
    assert storage["module"] == "image_pipeline.dagster_plugins.pooled_postgres"
    assert storage["class"] == "PooledPostgresStorage"
    assert storage["config"] == deployment.pop("storage")["postgres"]
    assert celery == deployment  # no drift from dagster.yaml
