"""An accepted upload, a request's status, the database health answer."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from image_pipeline.domain.status import ALL_STATUSES


class UploadAccepted(BaseModel):
    request_id: str
    message: str
    status_url: str

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "request_id": "3f6c2b1e-5d0a-4c1b-9a43-2e8f0c7d9b11",
                    "message": "accepted: 3 products, 7 images",
                    "status_url": "http://127.0.0.1:8000/api/status/3f6c2b1e-5d0a-4c1b-9a43-2e8f0c7d9b11",
                }
            ]
        }
    }


class Progress(BaseModel):
    total: int
    done: int
    failed: int


class StatusResponse(BaseModel):
    request_id: str
    status: Literal[ALL_STATUSES]  # type: ignore[valid-type]  (the domain's statuses, in order)
    progress: Progress
    created_at: datetime
    updated_at: datetime
    output_csv_url: str | None
    error: str | None = None
    profile: str = Field("default", description="The output profile the request was accepted with")
    manifest_url: str | None = Field(None, description="Per URL and rendition, what was made (when final)")

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "request_id": "3f6c2b1e-5d0a-4c1b-9a43-2e8f0c7d9b11",
                    "status": "processing",
                    "progress": {"total": 7, "done": 4, "failed": 1},
                    "created_at": "2026-11-25T07:30:21+00:00",
                    "updated_at": "2026-11-25T07:30:30+00:00",
                    "output_csv_url": None,
                    "error": None,
                }
            ]
        }
    }


class DbHealth(BaseModel):
    db_status: Literal["connected", "unavailable"]
    detail: str | None = None

    model_config = {
        "json_schema_extra": {
            "examples": [
                {"db_status": "connected", "detail": None},
                {"db_status": "unavailable", "detail": "no answer within 3 s"},
            ]
        }
    }
