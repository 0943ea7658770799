"""Alembic environment: the URL comes from the caller (`db.engine.upgrade`) or `sqlalchemy.url`."""

from alembic import context
from sqlalchemy import engine_from_config, pool

from image_pipeline.domain.db.models import Base

config = context.config
# Our own version table: the app tables may share a database with Dagster's, which has `alembic_version`.
VERSION_TABLE = "imgpipe_alembic_version"
target_metadata = Base.metadata


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        version_table=VERSION_TABLE,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connectable = engine_from_config(
        config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.", poolclass=pool.NullPool
    )
    with connectable.connect() as connection:
        context.configure(
            connection=connection, target_metadata=target_metadata, render_as_batch=True, version_table=VERSION_TABLE
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
