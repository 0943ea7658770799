"""Dagster instance plugins named in a dagster.yaml (run coordinator, run launchers, pooled PostgreSQL
storage, storage preparation, the S3 IO manager client). Never loaded as definitions."""
