"""image-pipeline: a CSV of product image URLs in; recompressed images in object storage, progress and a
signed webhook out.

`domain/` is the product in plain Python (never imports Dagster or FastAPI); `defs/` are the thin Dagster
definitions over it (built in `definitions.py`), `dagster_plugins/` the instance plugins a dagster.yaml
names, `cli/` the `imgpipe` command; the FastAPI app is the top-level `api` package. docs/architecture.md
has the map.
"""
