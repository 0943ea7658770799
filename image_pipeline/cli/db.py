"""`imgpipe db upgrade`: apply the app database migrations (the API also does this when it starts)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    db = sub.add_parser("db", help="app database")
    dbsub = db.add_subparsers(dest="db_command", required=True)
    up = dbsub.add_parser("upgrade", help="apply migrations to IMGPIPE_DATABASE_URL")
    up.set_defaults(func=_upgrade)


def _upgrade(_: argparse.Namespace) -> int:
    from image_pipeline.domain.db.engine import upgrade
    from image_pipeline.domain.settings import Settings

    url = Settings().resolved_database_url
    upgrade(url)
    print(f"database at {url.split('@')[-1]} is up to date")
    return 0
