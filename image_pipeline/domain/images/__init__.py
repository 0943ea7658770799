"""One image: fetched safely (fetch, host_limits), recompressed (codec), a chunk of them concurrently (worker)."""
