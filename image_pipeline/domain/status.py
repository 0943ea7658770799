"""A request's status: the values it moves through and its public document (`GET /api/status/{id}`)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from image_pipeline.domain.clock import iso_utc

if TYPE_CHECKING:
    from image_pipeline.domain.db.models import ImageRequest

# In the order a request moves through them.
PENDING, PROCESSING, COMPLETED, PARTIALLY_FAILED, FAILED = (
    "pending",
    "processing",
    "completed",
    "partially_failed",
    "failed",
)
CANCELED = "canceled"  # stopped by its owner (POST /api/requests/{id}/cancel) while pending or processing
ALL_STATUSES = (PENDING, PROCESSING, COMPLETED, PARTIALLY_FAILED, FAILED, CANCELED)
FINAL_STATUSES = (COMPLETED, PARTIALLY_FAILED, FAILED, CANCELED)
CANCELABLE_STATUSES = (PENDING, PROCESSING)


def is_final(status: str | None) -> bool:
    return status in FINAL_STATUSES


def final_status(done: int, total: int) -> str:
    """Completed when every image is done, failed when none is, partially failed in between."""
    return COMPLETED if done == total else (FAILED if done == 0 else PARTIALLY_FAILED)


def status_document(req: ImageRequest, api_base_url: str) -> dict:
    """The public status of a request, as `GET /api/status/{id}` returns it (and the cache stores it)."""
    ready = bool(req.output_csv_key) and is_final(req.status)
    output = f"{api_base_url}/api/requests/{req.id}/output.csv" if ready else None
    return {
        "request_id": req.id,
        "status": req.status,
        "progress": {"total": req.url_count, "done": req.done_count, "failed": req.failed_count},
        "created_at": iso_utc(req.created_at),
        "updated_at": iso_utc(req.updated_at),
        "output_csv_url": output,
        "error": req.error,
        "profile": profile_name(req.profile),
        "manifest_url": f"{api_base_url}/api/requests/{req.id}/manifest.json" if ready else None,
        "owner": req.owner,
    }


def profile_name(frozen: str | None) -> str:
    """The name of a request's frozen profile (canonical JSON), `default` for the seed's output."""
    return json.loads(frozen)["name"] if frozen else "default"
