"""FastAPI front door: validates and accepts uploads, reports status, serves results. Never processes images."""
