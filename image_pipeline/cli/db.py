"""`imgpipe migrate` (and its older name `imgpipe db upgrade`): prepare the storage every process shares,
once, before they start: the app database's migrations, optionally Dagster's storage and the bucket.

Run as a one-shot step (compose's `migrate` service, the Helm chart's pre-install/pre-upgrade Job) with
IMGPIPE_MIGRATE_ON_START=false on the API, so replicas starting together never race to migrate.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    mig = sub.add_parser("migrate", help="apply the app database migrations (and, if asked, Dagster's storage)")
    mig.add_argument(
        "--dagster",
        action="store_true",
        help="also bring Dagster's storage ($DAGSTER_HOME/dagster.yaml) to head and set the chunk pool's limit",
    )
    mig.add_argument(
        "--create-bucket",
        action="store_true",
        help="also create IMGPIPE_S3_BUCKET when it is missing (a store the deployment runs itself)",
    )
    mig.add_argument(
        "--reset-metrics",
        action="store_true",
        help="also empty $PROMETHEUS_MULTIPROC_DIR, the metrics directory the deployment's processes share "
        "(once per start of the whole deployment, before they start)",
    )
    mig.set_defaults(func=_migrate)
    db = sub.add_parser("db", help="app database")
    dbsub = db.add_subparsers(dest="db_command", required=True)
    up = dbsub.add_parser("upgrade", help="apply migrations to IMGPIPE_DATABASE_URL (the same as `imgpipe migrate`)")
    up.set_defaults(func=_migrate, dagster=False, create_bucket=False, reset_metrics=False)


def _migrate(args: argparse.Namespace) -> int:
    from image_pipeline.domain.db.engine import upgrade
    from image_pipeline.domain.settings import Settings

    if args.reset_metrics:
        from image_pipeline.domain.telemetry.metrics import multiprocess_dir, reset_multiprocess_dir

        where = multiprocess_dir()
        if where is None:
            print("--reset-metrics: PROMETHEUS_MULTIPROC_DIR is not set")
            return 2
        print(f"metrics directory {where}: {reset_multiprocess_dir(where)} old file(s) removed")
    settings = Settings()
    url = settings.resolved_database_url
    upgrade(url)
    print(f"database at {url.split('@')[-1]} is up to date")
    if args.dagster:
        from image_pipeline.dagster_plugins.prepare_storage import main as prepare_dagster

        prepare_dagster()
        print("Dagster storage is up to date")
    if args.create_bucket:
        from image_pipeline.domain.objects.s3 import S3Store
        from image_pipeline.domain.services import make_store

        store = make_store(settings)
        if not isinstance(store, S3Store):
            print("--create-bucket: IMGPIPE_S3_BUCKET is not set (objects are a local directory)")
            return 2
        made = store.create_bucket_if_missing()
        print(f"bucket {settings.s3_bucket} {'created' if made else 'exists'}")
    return 0
