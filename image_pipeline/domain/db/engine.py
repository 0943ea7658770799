"""Engine creation and Alembic migrations for the app database (PostgreSQL, or SQLite embedded)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from image_pipeline.domain.process_cache import ProcessCache

MIGRATIONS = Path(__file__).parent / "migrations"


def normalise_url(url: str) -> str:
    """SQLAlchemy 2.1 reads bare `postgresql://` as psycopg 3; we ship psycopg2."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix) :]
    return url


def _ensure_sqlite_dir(url: str) -> None:
    if url.startswith("sqlite") and "///" in url and ":memory:" not in url:
        Path(url.split("///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)


def make_engine(url: str, *, connect_timeout: int = 5) -> Engine:
    url = normalise_url(url)
    _ensure_sqlite_dir(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            # WAL: the API and the run worker write the same file from different processes.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=10,
        pool_timeout=connect_timeout,
        connect_args={"connect_timeout": connect_timeout},
    )


# One engine (and its connection pool) per database URL per process, shared by every run a long-lived
# process executes instead of a new engine and new connections per run (image_pipeline.domain.process_cache).
_ENGINES: ProcessCache[Engine] = ProcessCache(make_engine, close=lambda e: e.dispose())


def shared_engine(url: str) -> Engine:
    """This process's engine for `url` (PostgreSQL engines check a pooled connection before using it,
    so a restarted database costs a reconnect)."""
    return _ENGINES.get(url)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def upgrade(url: str) -> None:
    """Bring the database schema to the newest migration (idempotent)."""
    from alembic import command
    from alembic.config import Config

    _ensure_sqlite_dir(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    command.upgrade(cfg, "heads")  # "heads": parallel branches of migrations both apply
