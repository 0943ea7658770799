"""image-pipeline: CSV of product image URLs in, recompressed JPEGs in object storage out.

The package root is the plain-Python domain (CSV rules, fetching, codecs, storage, database,
webhooks). It never imports Dagster or FastAPI: `image_pipeline.defs` (Dagster) and `api`
(FastAPI) are thin layers on top of it.
"""
