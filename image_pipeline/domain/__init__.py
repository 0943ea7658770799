"""The product in plain Python: CSV rules, the request flow, fetching, codecs, object storage, the
database, webhooks, settings. Never imports dagster*, fastapi or starlette (import-linter holds it)."""
