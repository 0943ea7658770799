"""Create Dagster's run/event/schedule storage once, before the processes that share it start.

dagster-daemon, dagster-webserver and Celery workers each create any missing storage tables when
they open the instance. Started together on an empty PostgreSQL database they race, and the loser
dies with `type "snapshots" already exists`. Launchers (`make up`, the e2e test stack) call this
first; docker compose runs `dagster instance migrate` as a one-shot service for the same reason.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def create_dagster_storage(dagster_home: Path, env: Mapping[str, str]) -> None:
    """Open (and so create) the instance in `dagster_home`, resolving its `env:` settings from `env`."""
    from dagster import DagsterInstance

    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        instance = DagsterInstance.from_config(str(dagster_home))
        # Touch each storage so lazily built ones exist too.
        instance.get_runs(limit=1)
        instance.get_latest_materialization_events([])
        instance.all_instigator_state()
        instance.dispose()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
