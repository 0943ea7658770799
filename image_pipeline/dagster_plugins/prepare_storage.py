"""Prepare Dagster's storage once, before the processes that share it start.

- dagster-daemon, dagster-webserver and Celery workers each create any missing storage tables when
  they open the instance. Started together on an empty PostgreSQL database they race, and the loser
  dies with `type "snapshots" already exists`.
- The first runs that claim a slot of a pool initialise its limit from `pools.default_limit`; when two
  do it at once on PostgreSQL one of them crashes (Dagster 1.13 retries an INSERT as an UPDATE inside
  the transaction the failed INSERT aborted). Initialising the chunk pool here avoids that.

Launchers call this first (`make up`, the e2e test stack); docker compose and the Helm hook Job run it
as part of the one-shot `imgpipe migrate --dagster` (uses $DAGSTER_HOME and the environment); it can
also run alone: `python -m image_pipeline.dagster_plugins.prepare_storage`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path


def prepare(instance) -> None:  # dagster.DagsterInstance
    """Bring the schema to head and give the chunk pool its configured limit."""
    from image_pipeline.domain.runs import CHUNK_POOL

    instance.upgrade()
    storage = instance.event_log_storage
    # Only a pool that has no limit yet: on PostgreSQL, Dagster 1.13 re-initialising an existing one fails the
    # same way as the race above, so a second run of this one-shot (`docker compose up` again) would crash.
    # A later change of pools.default_limit is applied with `dagster instance concurrency set image_chunks N`.
    if CHUNK_POOL not in storage.get_concurrency_keys():
        storage.initialize_concurrency_limit_to_default(CHUNK_POOL)


@contextmanager
def environ(env: Mapping[str, str]) -> Iterator[None]:
    """os.environ with `env` laid over it, for a DagsterInstance whose config resolves `env:` values."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def create_dagster_storage(dagster_home: Path, env: Mapping[str, str]) -> None:
    """`prepare` the instance in `dagster_home`, resolving its `env:` settings from `env`."""
    from dagster import DagsterInstance

    with environ(env), DagsterInstance.from_config(str(dagster_home)) as instance:
        prepare(instance)


def main() -> None:
    from dagster import DagsterInstance

    with DagsterInstance.get() as instance:
        prepare(instance)


if __name__ == "__main__":
    main()
