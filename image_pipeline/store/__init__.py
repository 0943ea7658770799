"""The app database (source of truth for requests and per-URL results) and the Redis status cache."""
