"""dagster-celery's CeleryRunLauncher, refusing a result backend that run monitoring cannot read.

Run monitoring (dagster.yaml `run_monitoring`, which frees pool slots and catches stuck starts) asks the
launcher for the state of each run's Celery task from the daemon. Under `rpc://` (the launcher's
default) only the process that sent a task can see its state: the daemon reads PENDING and Dagster
fails every started run ("Detected run worker status UNKNOWN: 'Unknown task status: PENDING'") while
the worker keeps executing it. We refuse that configuration when the instance loads instead.
Select it in dagster.yaml (deploy/celery/dagster.yaml):

    run_launcher:
      module: image_pipeline.dagster_plugins.celery_run_launcher
      class: CeleryRunLauncher
"""

from __future__ import annotations

from typing import Any

from dagster_celery.launcher import CeleryRunLauncher as _CeleryRunLauncher


class CeleryRunLauncher(_CeleryRunLauncher):
    def __init__(self, default_queue: str, backend: str | None = None, **kwargs: Any) -> None:
        if not backend or backend.startswith("rpc://"):
            raise ValueError(
                f"CeleryRunLauncher needs a result backend every process can read (redis://, a database), "
                f"not {backend or 'the rpc:// default'}: run monitoring reads each run's task state from the "
                "daemon and would fail every started run (docs/scale-out.md). Set IMGPIPE_CELERY_BACKEND_URL."
            )
        super().__init__(default_queue=default_queue, backend=backend, **kwargs)
