"""Every object key, in one place: a request's under `requests/<request_id>/...`, and the tenant's
content-addressed outputs of the sync memory under `outputs/<tenant>/<sha256>/...` (docs/sync.md).

Keys are deterministic, so a re-run overwrites instead of duplicating, and a step finds what an earlier
step (possibly on another machine) stored without asking anyone. `PUBLIC_IMAGE_KEY` is the only shape
`GET /files/...` serves: output images, never inputs or CSVs.
"""

from __future__ import annotations

import hashlib
import re

IMAGE_INDEX_DIGITS = 7
# The first rendition of URL n is images/<n>.<ext>; rendition `name` beyond the first is images/<n>-<name>.<ext>.
# A content-addressed output is outputs/<tenant>/<sha256 of the source bytes>/<rendition settings hash>.<ext>.
SETTINGS_HASH_CHARS = 16
TENANT_CHARS = 24
PUBLIC_IMAGE_KEY = re.compile(
    rf"^(requests/[0-9a-f-]{{36}}/images/\d{{{IMAGE_INDEX_DIGITS}}}(-[a-z0-9][a-z0-9_-]{{0,31}})?"
    rf"|outputs/[0-9a-f]{{{TENANT_CHARS}}}/[0-9a-f]{{64}}/[0-9a-f]{{{SETTINGS_HASH_CHARS}}})\.(jpg|webp|avif|png)$"
)
IMAGE_CONTENT_TYPES = {"jpg": "image/jpeg", "webp": "image/webp", "avif": "image/avif", "png": "image/png"}


def request_prefix(request_id: str) -> str:
    """Everything stored for one request lives under this prefix (retention deletes it whole)."""
    return f"requests/{request_id}"


def input_key(request_id: str) -> str:
    return f"{request_prefix(request_id)}/input.csv"


def rows_key(request_id: str) -> str:
    """The parsed rows, one JSON object per line in input order (streamed: never one document)."""
    return f"{request_prefix(request_id)}/rows.jsonl"


def legacy_rows_key(request_id: str) -> str:
    """Where requests stored before the JSON-lines file kept their rows: one JSON array."""
    return f"{request_prefix(request_id)}/rows.json"


def image_key(request_id: str, index: int, ext: str = "jpg", rendition: str | None = None) -> str:
    """URL `index`'s output: its first rendition (the seed's one JPEG) unnamed, any further one named."""
    suffix = f"-{rendition}" if rendition else ""
    return f"{request_prefix(request_id)}/images/{index:0{IMAGE_INDEX_DIGITS}d}{suffix}.{ext}"


def tenant_segment(owner: str) -> str:
    """The tenant's folder of content-addressed outputs: a hash of the owner id (any owner string is
    a safe path segment, and two tenants never share one)."""
    return hashlib.sha256(owner.encode()).hexdigest()[:TENANT_CHARS]


def content_key(owner: str, content_hash: str, settings_hash: str, ext: str) -> str:
    """The output made from the source bytes `content_hash` under one rendition's settings: the same
    bytes and settings give the same key in every request of the tenant (docs/sync.md)."""
    return f"outputs/{tenant_segment(owner)}/{content_hash}/{settings_hash}.{ext}"


def manifest_key(request_id: str) -> str:
    """The request's JSON manifest: per URL and rendition, what was made (written with the output CSV)."""
    return f"{request_prefix(request_id)}/manifest.json"


def output_csv_key(request_id: str) -> str:
    return f"{request_prefix(request_id)}/output.csv"


def plan_key(request_id: str) -> str:
    return f"{request_prefix(request_id)}/chunks/plan.json"


def chunk_urls_key(request_id: str, number: int) -> str:
    return f"{request_prefix(request_id)}/chunks/{number:05d}/urls.json"


def chunk_manifest_key(request_id: str, number: int) -> str:
    return f"{request_prefix(request_id)}/chunks/{number:05d}/manifest.jsonl"


def chunk_attempt_key(request_id: str, number: int) -> str:
    """Present while an attempt at the chunk is under way: found at the start of the next attempt, it
    means the last one's process died (see `request.chunks.process_chunk`)."""
    return f"{request_prefix(request_id)}/chunks/{number:05d}/attempt"


def chunk_summary_key(request_id: str, number: int) -> str:
    return f"{request_prefix(request_id)}/chunks/{number:05d}/summary.json"
