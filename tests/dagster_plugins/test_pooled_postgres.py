"""PooledPostgresStorage (deploy/celery/dagster.yaml): Dagster's PostgreSQL storage holding its
connections open. A run writes its events over one connection instead of one per event; a connection
the server dropped is replaced before use; true schema checks are asked once; disposing the instance
closes its connections."""

from __future__ import annotations

from collections.abc import Iterator

import dagster as dg
import pytest
from sqlalchemy import event, text

from image_pipeline.dagster_plugins import pooled_postgres
from image_pipeline.dagster_plugins import pooled_postgres as dagster_pg
from tests.support.services import create_pg_database, drop_pg_database, pg_admin_engine


@pytest.fixture
def dagster_url() -> Iterator[str]:
    url = create_pg_database("imgpipe_pooled")
    yield url
    drop_pg_database(url)


def _instance(url: str, storage: str):
    config = {"postgres_url": url}
    storages = {
        "pooled": {"custom": {"module": pooled_postgres.__name__, "class": "PooledPostgresStorage", "config": config}},
        "plain": {"postgres": config},
    }
    return dg.instance_for_test(overrides={"storage": storages[storage]})


def _count_connects(*engines) -> list[int]:
    made = [0]
    for engine in engines:
        event.listen(engine, "connect", lambda *_: made.__setitem__(0, made[0] + 1))
    return made


@dg.asset
def small() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"n": 1})


def _materialize(instance) -> int:
    result = dg.materialize([small], instance=instance)
    assert result.success
    return len(instance.all_logs(result.run_id))


@pytest.mark.parametrize("storage", ["pooled", "plain"])
def test_a_run_writes_its_events_over_a_connection_or_two(dagster_url, storage) -> None:
    """The plain storage (dagster-postgres' NullPool) connects for every event: the reason for ours."""
    with _instance(dagster_url, storage) as instance:
        made = _count_connects(instance.run_storage._engine, instance.event_log_storage._engine)
        events = _materialize(instance)
        assert events >= 10
        if storage == "pooled":
            assert made[0] <= 2 * 2, made  # two engines, at most their pool_size (2) each
        else:
            assert made[0] >= events, made


def test_a_connection_the_server_dropped_is_replaced_before_use(dagster_url, monkeypatch) -> None:
    with _instance(dagster_url, "pooled") as instance:
        _materialize(instance)  # the pools now hold idle connections
        admin = pg_admin_engine()
        with admin.connect() as c:
            killed = c.execute(
                text("select count(pg_terminate_backend(pid)) from pg_stat_activity where datname = :d"),
                {"d": dagster_url.rsplit("/", 1)[1]},
            ).scalar()
        admin.dispose()
        assert killed >= 1
        # Pretend the connections have been idle long enough to be checked (instead of sleeping).
        monkeypatch.setattr(dagster_pg, "IDLE_PING_SECONDS", 0.0)
        _materialize(instance)


def test_true_schema_checks_are_asked_once(dagster_url) -> None:
    with _instance(dagster_url, "pooled") as instance:
        storage = instance.event_log_storage
        queries: list[str] = []
        event.listen(storage._engine, "before_cursor_execute", lambda _c, _cur, sql, *_: queries.append(sql))
        assert storage.has_table("dynamic_partitions") and storage.has_asset_key_col("cached_status_data")
        asked = len(queries)
        assert asked >= 2
        assert storage.has_table("dynamic_partitions") and storage.has_asset_key_col("cached_status_data")
        assert len(queries) == asked  # remembered
        assert not storage.has_table("no_such_table") and not storage.has_table("no_such_table")
        assert len(queries) == asked + 2  # a missing table is asked again (a migration may add it)
        assert instance.run_storage.has_run_stats_index_cols()


def test_disposing_the_instance_closes_its_connections(dagster_url) -> None:
    with _instance(dagster_url, "pooled") as instance:
        _materialize(instance)
        engines = [instance.run_storage._engine, instance.event_log_storage._engine]
        assert sum(e.pool.checkedin() for e in engines) >= 1
    assert sum(e.pool.checkedin() for e in engines) == 0
