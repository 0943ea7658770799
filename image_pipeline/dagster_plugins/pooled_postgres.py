"""Dagster's PostgreSQL storage holding its connections open instead of connecting for every query.

dagster-postgres builds its engines with `NullPool` ("not holding any connections open to prevent
accumulating connections per DagsterInstance"): every event a run writes (a dozen per step) and every
read opens a new PostgreSQL connection (TCP, start-up, authentication, a server process forked) and
closes it. Even a three-image request writes dozens of events, and profiling a run inside a warm
Celery worker showed a large share of its time in those connects (docs/scale-out.md, "Measured").

`PooledPostgresStorage` is the same storage (same tables, same config: `postgres_url` or `postgres_db`)
whose run, event-log and schedule storages keep up to two connections per engine open for the
instance's lifetime (`pool_size=2`); more threads at once (the daemon's) get extra connections that are
closed when returned (`max_overflow=-1`: no limit and no waiting, as with NullPool). A connection idle
for over a second is checked before use, so one PostgreSQL dropped meanwhile is replaced, not used.
Schema checks that came out true are remembered (`_SchemaChecks`). The run and event-log engines are
disposed with the instance (Dagster disposes those two storages), the schedule storage's when it is
garbage-collected: a process that opens an instance per run (a Celery run worker) does not accumulate
connections.

The webserver still replaces these engines with its own (`optimize_for_webserver`). Select it in
dagster.yaml:

    storage:
      custom:
        module: image_pipeline.dagster_plugins.pooled_postgres
        class: PooledPostgresStorage
        config:
          postgres_url: {env: IMGPIPE_DAGSTER_PG_URL}
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from typing import Any

from dagster._core.storage.base_storage import DagsterStorage
from dagster._serdes import ConfigurableClassData
from dagster_postgres import DagsterPostgresStorage, PostgresEventLogStorage, PostgresRunStorage
from dagster_postgres.schedule_storage import PostgresScheduleStorage
from dagster_postgres.utils import create_pg_engine, get_token_provider_from_config, pg_url_from_config
from sqlalchemy import event, exc

# A pooled connection older than this is replaced on checkout (PostgreSQL or a proxy may drop idle ones).
POOL_RECYCLE_SECONDS = 3600
# A pooled connection idle for longer than this is checked (`SELECT 1`) before it is handed out. Not
# on every checkout (SQLAlchemy's pool_pre_ping): a run checks a connection out for every event it
# writes, and the extra round trip each time cost more than the connects it replaced. A connection
# used less than a second ago can only be dead if PostgreSQL went away within that second; its next
# statement then fails once and SQLAlchemy discards the pool's connections.
IDLE_PING_SECONDS = 1.0


def _ping_if_idle(engine: Any) -> None:  # sqlalchemy Engine
    """SQLAlchemy's "pessimistic disconnect handling" recipe, for connections idle > IDLE_PING_SECONDS:
    raising DisconnectionError at checkout makes the pool replace the connection (and retry)."""

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_conn: Any, record: Any) -> None:
        if record is not None:
            record.info["imgpipe_checked_in"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("imgpipe_checked_in")
        if since is None or time.monotonic() - since < IDLE_PING_SECONDS:
            return  # a connection just made, or just used
        try:
            cursor = dbapi_conn.cursor()
            cursor.execute("SELECT 1")
            cursor.close()
        except Exception as e:  # any failure means: do not use this connection
            raise exc.DisconnectionError(str(e)) from e


def _use_pool(storage: Any) -> None:  # a dagster-postgres storage
    """Swap the storage's NullPool engine for a pooled one (as dagster-postgres' optimize_for_webserver
    does, without its statement timeout)."""
    nullpool = storage._engine
    kwargs: dict[str, Any] = {
        "isolation_level": "AUTOCOMMIT",
        "pool_size": 2,
        "max_overflow": -1,
        "pool_recycle": POOL_RECYCLE_SECONDS,
    }
    options = nullpool.url.query.get("options")
    if options:
        kwargs["connect_args"] = {"options": options}
    storage._engine = create_pg_engine(storage.postgres_url, storage._token_provider, **kwargs)
    _ping_if_idle(storage._engine)
    nullpool.dispose()


class _SchemaChecks:
    """Remember the schema checks that came out true (a table or column exists).

    Dagster asks the database whether a table or column exists (SQLAlchemy reflection) before many
    reads and writes, so that it works on databases not yet migrated: several catalogue queries per
    run step. A table or column that exists keeps existing, so a true answer is kept for the storage's
    lifetime; a false one is asked again (a migration may add it meanwhile).
    """

    def _known_true(self, key: tuple, check: Callable[[], bool]) -> bool:
        known: set[tuple] = self.__dict__.setdefault("_imgpipe_schema_true", set())
        if key in known:
            return True
        if check():
            known.add(key)
            return True
        return False


def _kwargs(config_value: Any) -> dict[str, Any]:  # PostgresStorageConfig
    return {
        "postgres_url": pg_url_from_config(config_value),
        "should_autocreate_tables": config_value.get("should_autocreate_tables", True),
        "token_provider": get_token_provider_from_config(config_value),
    }


class PooledPostgresRunStorage(_SchemaChecks, PostgresRunStorage):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _use_pool(self)

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value: Any) -> PooledPostgresRunStorage:
        return cls(inst_data=inst_data, **_kwargs(config_value))

    def dispose(self) -> None:
        super().dispose()
        self._engine.dispose()

    def has_run_stats_index_cols(self) -> bool:
        return self._known_true(("run_stats_index_cols",), super().has_run_stats_index_cols)

    def has_bulk_actions_selector_cols(self) -> bool:
        return self._known_true(("bulk_actions_selector_cols",), super().has_bulk_actions_selector_cols)

    def has_backfill_id_column(self) -> bool:
        return self._known_true(("backfill_id_column",), super().has_backfill_id_column)

    def has_bulk_action_job_name_column(self) -> bool:
        return self._known_true(("bulk_action_job_name_column",), super().has_bulk_action_job_name_column)

    def has_backfill_tags_table(self) -> bool:
        return self._known_true(("backfill_tags_table",), super().has_backfill_tags_table)


class PooledPostgresEventLogStorage(_SchemaChecks, PostgresEventLogStorage):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _use_pool(self)

    @classmethod
    def from_config_value(
        cls,
        inst_data: ConfigurableClassData | None,
        config_value: Any,
    ) -> PooledPostgresEventLogStorage:
        return cls(inst_data=inst_data, **_kwargs(config_value))

    def dispose(self) -> None:
        super().dispose()
        self._engine.dispose()

    def has_table(self, table_name: str) -> bool:
        return self._known_true(
            ("table", table_name), lambda: super(PooledPostgresEventLogStorage, self).has_table(table_name)
        )

    def has_asset_key_col(self, column_name: str) -> bool:
        return self._known_true(
            ("asset_key_col", column_name),
            lambda: super(PooledPostgresEventLogStorage, self).has_asset_key_col(column_name),
        )


class PooledPostgresScheduleStorage(_SchemaChecks, PostgresScheduleStorage):
    """Dagster's instance never disposes its schedule storage: the engine is disposed when the storage
    is garbage-collected."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _use_pool(self)
        weakref.finalize(self, self._engine.dispose)

    @classmethod
    def from_config_value(
        cls,
        inst_data: ConfigurableClassData | None,
        config_value: Any,
    ) -> PooledPostgresScheduleStorage:
        return cls(inst_data=inst_data, **_kwargs(config_value))

    def has_instigators_table(self) -> bool:
        return self._known_true(("instigators_table",), super().has_instigators_table)

    def has_secondary_index_table(self) -> bool:
        return self._known_true(("secondary_index_table",), super().has_secondary_index_table)


class PooledPostgresStorage(DagsterPostgresStorage):
    """`DagsterPostgresStorage` with pooled engines (module docstring)."""

    def __init__(
        self,
        postgres_url: str,
        should_autocreate_tables: bool = True,
        inst_data: ConfigurableClassData | None = None,
        token_provider: Any = None,  # dagster_postgres.auth.PgTokenProvider
    ) -> None:
        self.postgres_url = postgres_url
        self.should_autocreate_tables = should_autocreate_tables
        self._inst_data = inst_data
        kw = {"should_autocreate_tables": should_autocreate_tables, "token_provider": token_provider}
        self._run_storage = PooledPostgresRunStorage(postgres_url, **kw)
        self._event_log_storage = PooledPostgresEventLogStorage(postgres_url, **kw)
        self._schedule_storage = PooledPostgresScheduleStorage(postgres_url, **kw)
        DagsterStorage.__init__(self)

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value: Any) -> PooledPostgresStorage:
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
        return self._data("PooledPostgresScheduleStorage")
