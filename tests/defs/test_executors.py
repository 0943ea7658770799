"""IMGPIPE_EXECUTOR: the executor is chosen by configuration, and a configuration that cannot work is
refused at start with every problem named."""

import subprocess
import sys

import dagster as dg
import pytest

from image_pipeline.defs.executors import ScaleOutConfigError, build_executor, scale_out_problems
from image_pipeline.defs.jobs import request_jobs
from image_pipeline.defs.resources import build_resources
from image_pipeline.domain.runs import FANOUT_JOB_NAME, job_name_for
from image_pipeline.domain.settings import Settings
from tests.support.paths import ROOT

SCALE_OUT = {
    "s3_bucket": "b",
    "database_url": "postgresql+psycopg2://u@h/db",
    "dagster_pg_url": "postgresql://u@h/dagster",
}


def settings(**values) -> Settings:
    return Settings(_env_file=None, **values)


def test_in_process_needs_nothing_and_has_one_job() -> None:
    s = settings()
    assert scale_out_problems(s) == [] and build_executor(s) is dg.in_process_executor
    assert [j.name for j in request_jobs(s)] == ["process_request_job"]
    assert "io_manager" not in build_resources(s)


@pytest.mark.parametrize("executor", ["multiprocess", "celery"])
def test_scale_out_executor_gets_a_second_job_and_s3_io(executor: str) -> None:
    s = settings(executor=executor, **SCALE_OUT)
    jobs = {j.name: j for j in request_jobs(s)}
    assert set(jobs) == {"process_request_job", FANOUT_JOB_NAME}
    assert jobs[FANOUT_JOB_NAME].executor_def.name == executor
    assert type(build_resources(s)["io_manager"]).__name__ == "S3PickleIOManager"
    assert job_name_for(s, s.fanout_threshold) == FANOUT_JOB_NAME
    assert job_name_for(s, s.fanout_threshold - 1) == "process_request_job"


def test_scale_out_without_shared_storage_is_refused_with_every_problem() -> None:
    s = settings(executor="celery")
    with pytest.raises(ScaleOutConfigError) as err:
        build_executor(s)
    message = str(err.value)
    for name in ("IMGPIPE_S3_BUCKET", "IMGPIPE_DATABASE_URL", "IMGPIPE_DAGSTER_PG_URL"):
        assert name in message


def test_missing_integration_package_is_named() -> None:
    """dagster-docker is in no extra and so in no lock, the dev lock included: the refusal names it."""
    with pytest.raises(ScaleOutConfigError, match="dagster-docker"):
        build_executor(settings(executor="docker", **SCALE_OUT))


@pytest.mark.parametrize("executor", ["k8s", "celery", "ecs"])
def test_each_scale_out_executor_builds_with_its_extra_installed(executor: str) -> None:
    """The dev lock holds every extra (tests/defs/test_dependency_locks.py checks each image lock has its own)."""
    assert build_executor(settings(executor=executor, **SCALE_OUT)).name == executor


def test_code_location_refuses_to_load_with_a_clear_message(tmp_path) -> None:
    env = {"PATH": "/usr/bin:/bin", "IMGPIPE_EXECUTOR": "multiprocess", "IMGPIPE_DATA_DIR": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-c", "from image_pipeline import definitions; definitions.defs()"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert "IMGPIPE_EXECUTOR=multiprocess cannot start" in proc.stderr and "IMGPIPE_S3_BUCKET" in proc.stderr


def test_scale_out_without_dagster_aws_is_refused_naming_it(tmp_path) -> None:
    """The API image's lock has no dagster-aws; a code location built from it with a scale-out executor
    is refused at load with the reason, not an ImportError half-way into a run. `sys.modules[name] = None`
    is Python's own way to make a package unimportable (find_spec answers None, import raises)."""
    probe = (
        "import sys; sys.modules['dagster_aws'] = None\n"
        "from image_pipeline.defs.executors import scale_out_problems\n"
        "from image_pipeline.domain.settings import Settings\n"
        "print(scale_out_problems(Settings(_env_file=None, executor='multiprocess', "
        "s3_bucket='b', database_url='postgresql+psycopg2://u@h/db', dagster_pg_url='postgresql://u@h/d')))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "dagster-aws must be installed" in proc.stdout
