"""The Dagster executor that runs a large request's chunk steps, chosen by `IMGPIPE_EXECUTOR`.

`in_process` (default) needs nothing else. Every other executor runs steps in other processes or on
other machines, so step outputs go through S3 (S3PickleIOManager), the app DB must be PostgreSQL and
Dagster's own storage must be PostgreSQL too (dagster.yaml, IMGPIPE_DAGSTER_PG_URL); we refuse to
start otherwise rather than fail half-way through a request. Integrations are imported only when chosen.
"""

from __future__ import annotations

import importlib.util
import os

import dagster as dg

from image_pipeline.domain.settings import Settings

_PACKAGES = {"celery": "dagster-celery", "k8s": "dagster-k8s", "ecs": "dagster-aws", "docker": "dagster-docker"}


class ScaleOutConfigError(ValueError):
    """The configured executor cannot work with the rest of the configuration."""


def scale_out_problems(s: Settings) -> list[str]:
    """What is missing for `s.executor`; empty when the configuration can run."""
    if s.executor == "in_process":
        return []
    problems = []
    if not s.s3_bucket:
        problems.append("IMGPIPE_S3_BUCKET must be set (steps on other processes/machines share data through S3)")
    if not (s.database_url or "").startswith("postgresql"):
        problems.append("IMGPIPE_DATABASE_URL must be a PostgreSQL URL (SQLite is local to one machine)")
    if not s.dagster_pg_url:
        problems.append("IMGPIPE_DAGSTER_PG_URL must be set (Dagster run/event storage on PostgreSQL)")
    if importlib.util.find_spec("dagster_aws") is None:  # S3PickleIOManager: an extra since the API image lost it
        problems.append("dagster-aws must be installed (step outputs go through S3): the image's lock needs an extra")
    return problems


def _by_env(name: str, value: str) -> str | dict:
    """Executor config that names the environment variable rather than holding its value, when it is
    set there: the Dagster UI shows an executor's config, and a broker URL carries a password."""
    return {"env": name} if os.environ.get(name) else value


def build_executor(s: Settings) -> dg.ExecutorDefinition:
    """The executor of the fan-out job (`runs.FANOUT_JOB_NAME`); raises ScaleOutConfigError when it cannot run."""
    problems = scale_out_problems(s)
    if problems:
        raise ScaleOutConfigError(f"IMGPIPE_EXECUTOR={s.executor} cannot start: " + "; ".join(problems))
    limit = {"max_concurrent": s.max_concurrent_chunks} if s.max_concurrent_chunks else {}
    try:
        if s.executor == "in_process":
            return dg.in_process_executor
        if s.executor == "multiprocess":
            return dg.multiprocess_executor.configured(limit)
        if s.executor == "celery":
            from dagster_celery import celery_executor

            return celery_executor.configured(
                {
                    "broker": _by_env("IMGPIPE_CELERY_BROKER_URL", s.celery_broker_url),
                    "backend": _by_env("IMGPIPE_CELERY_BACKEND_URL", s.celery_backend_url),
                    "config_source": {"task_default_queue": s.celery_queue},
                }
            )
        if s.executor == "k8s":
            from dagster_k8s import k8s_job_executor

            return k8s_job_executor.configured(limit)
        if s.executor == "ecs":
            from dagster_aws.ecs import ecs_executor

            return ecs_executor
        from dagster_docker import docker_executor

        return docker_executor
    except ImportError as exc:
        raise ScaleOutConfigError(
            f"IMGPIPE_EXECUTOR={s.executor} needs the {_PACKAGES[s.executor]} package ({exc})"
        ) from exc
