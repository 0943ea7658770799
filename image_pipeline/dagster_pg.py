"""Dagster's PostgreSQL storage holding its connections open instead of connecting for every query.

dagster-postgres builds its engines with `NullPool` ("not holding any connections open to prevent
accumulating connections per DagsterInstance"): every event a run writes (a dozen per step) and every
read opens a new PostgreSQL connection (TCP, start-up, authentication, a server process forked) and
closes it. A three-image request writes ~60 events, and profiling a run inside a warm Celery worker
(docs/scale-out.md, "Measured") showed about a third of its time in those connects.

`PooledPostgresStorage` is the same storage (same tables, same config: `postgres_url` or `postgres_db`)
whose run and event-log storages keep one connection per engine open for the instance's lifetime
(`pool_size=1`), pre-pinged before use so a restarted PostgreSQL costs a reconnect, not an error. More
threads at once (the daemon's) get extra connections that are closed when returned
(`max_overflow=-1`: no limit and no waiting, as with NullPool). The engines are disposed with the
instance, so a process that opens an instance per run (a Celery run worker) holds at most two idle
connections per open instance, not one per run. The schedule storage is left as it is: runs do not
use it.

The webserver still replaces these engines with its own (`optimize_for_webserver`). Select it in
dagster.yaml:

    storage:
      custom:
        module: image_pipeline.dagster_pg
        class: PooledPostgresStorage
        config:
          postgres_url: {env: IMGPIPE_DAGSTER_PG_URL}
"""

from __future__ import annotations

from typing import Any

from dagster._core.storage.base_storage import DagsterStorage
from dagster._serdes import ConfigurableClassData
from dagster_postgres import DagsterPostgresStorage, PostgresEventLogStorage, PostgresRunStorage
from dagster_postgres.schedule_storage import PostgresScheduleStorage
from dagster_postgres.utils import create_pg_engine, get_token_provider_from_config, pg_url_from_config

# A pooled connection older than this is replaced on checkout (PostgreSQL or a proxy may drop idle ones).
POOL_RECYCLE_SECONDS = 3600


def _use_pool(storage: Any) -> None:  # noqa: ANN401 (PostgresRunStorage | PostgresEventLogStorage)
    """Swap the storage's NullPool engine for a pooled one (as dagster-postgres' optimize_for_webserver
    does, without its statement timeout)."""
    nullpool = storage._engine
    kwargs: dict[str, Any] = {
        "isolation_level": "AUTOCOMMIT",
        "pool_size": 1,
        "max_overflow": -1,
        "pool_pre_ping": True,
        "pool_recycle": POOL_RECYCLE_SECONDS,
    }
    options = nullpool.url.query.get("options")
    if options:
        kwargs["connect_args"] = {"options": options}
    storage._engine = create_pg_engine(storage.postgres_url, storage._token_provider, **kwargs)
    nullpool.dispose()


def _kwargs(config_value: Any) -> dict[str, Any]:  # noqa: ANN401 (PostgresStorageConfig)
    return {
        "postgres_url": pg_url_from_config(config_value),
        "should_autocreate_tables": config_value.get("should_autocreate_tables", True),
        "token_provider": get_token_provider_from_config(config_value),
    }


class PooledPostgresRunStorage(PostgresRunStorage):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _use_pool(self)

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value: Any) -> PooledPostgresRunStorage:  # noqa: ANN401
        return cls(inst_data=inst_data, **_kwargs(config_value))

    def dispose(self) -> None:
        super().dispose()
        self._engine.dispose()


class PooledPostgresEventLogStorage(PostgresEventLogStorage):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _use_pool(self)

    @classmethod
    def from_config_value(
        cls,
        inst_data: ConfigurableClassData | None,
        config_value: Any,  # noqa: ANN401
    ) -> PooledPostgresEventLogStorage:
        return cls(inst_data=inst_data, **_kwargs(config_value))

    def dispose(self) -> None:
        super().dispose()
        self._engine.dispose()


class PooledPostgresStorage(DagsterPostgresStorage):
    """`DagsterPostgresStorage` with pooled run and event-log engines (module docstring)."""

    def __init__(
        self,
        postgres_url: str,
        should_autocreate_tables: bool = True,
        inst_data: ConfigurableClassData | None = None,
        token_provider: Any = None,  # noqa: ANN401 (dagster_postgres.auth.PgTokenProvider)
    ) -> None:
        self.postgres_url = postgres_url
        self.should_autocreate_tables = should_autocreate_tables
        self._inst_data = inst_data
        kw = {"should_autocreate_tables": should_autocreate_tables, "token_provider": token_provider}
        self._run_storage = PooledPostgresRunStorage(postgres_url, **kw)
        self._event_log_storage = PooledPostgresEventLogStorage(postgres_url, **kw)
        self._schedule_storage = PostgresScheduleStorage(postgres_url, **kw)
        DagsterStorage.__init__(self)

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value: Any) -> PooledPostgresStorage:  # noqa: ANN401
        return cls(inst_data=inst_data, **_kwargs(config_value))

    def _data(self, class_name: str) -> ConfigurableClassData | None:
        return ConfigurableClassData(__name__, class_name, self.inst_data.config_yaml) if self.inst_data else None

    @property
    def event_storage_data(self) -> ConfigurableClassData | None:
        return self._data("PooledPostgresEventLogStorage")

    @property
    def run_storage_data(self) -> ConfigurableClassData | None:
        return self._data("PooledPostgresRunStorage")

    @property
    def schedule_storage_data(self) -> ConfigurableClassData | None:
        return (
            ConfigurableClassData("dagster_postgres", "PostgresScheduleStorage", self.inst_data.config_yaml)
            if self.inst_data
            else None
        )
