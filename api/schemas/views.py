"""The read-only views: the recent-requests list and one request's per-URL results."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from api.schemas.requests import StatusResponse
from image_pipeline.domain.images.failures import FailureClass

_RID = "3f6c2b1e-5d0a-4c1b-9a43-2e8f0c7d9b11"


class RequestSummary(StatusResponse):
    filename: str | None = Field(None, description="Name of the uploaded file, as the client sent it")
    bytes_in: int = Field(0, description="Bytes downloaded for the images done so far")
    bytes_out: int = Field(0, description="Bytes stored for the images done so far")


class RequestList(BaseModel):
    requests: list[RequestSummary]

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "requests": [
                        {
                            "request_id": _RID,
                            "status": "completed",
                            "progress": {"total": 3, "done": 3, "failed": 0},
                            "created_at": "2026-11-25T07:30:21+00:00",
                            "updated_at": "2026-11-25T07:30:39+00:00",
                            "output_csv_url": f"http://127.0.0.1:8000/api/requests/{_RID}/output.csv",
                            "error": None,
                            "filename": "products.csv",
                            "bytes_in": 912345,
                            "bytes_out": 301234,
                        }
                    ]
                }
            ]
        }
    }


class RenditionOutcome(BaseModel):
    name: str
    url: str
    format: Literal["jpeg", "webp", "avif", "png"]
    width: int
    height: int
    bytes: int
    quality: int = Field(description="The encoder's quality number used (searched per image for a target)")
    kept_original: bool = False
    score: float | None = Field(None, description="SSIMULACRA2 of the centre crop, on the scored sample")


class ImageOutcome(BaseModel):
    index: int = Field(description="Position of the URL in the request (row order, then cell order), from 0")
    url: str = Field(description="The input image URL")
    status: Literal["pending", "done", "failed"]
    error: str | None = Field(None, description="Why the URL failed, in words")
    failure_class: FailureClass | None = Field(
        None,
        description="Why the URL failed, as a class: transient (the host kept failing after the in-run retries), "
        "timeout (too slow on every try), permanent (an HTTP answer that retrying cannot change, e.g. 404, 410), "
        "refused (the URL policy or a size limit), invalid_image (not decodable, or an image bomb), internal",
    )
    bytes_in: int | None = None
    bytes_out: int | None = None
    kept_original: bool = Field(False, description="The original was already smaller and was stored as it was")
    output_url: str | None = Field(None, description="Public URL of the output (a profile's first rendition)")
    score: float | None = Field(None, description="SSIMULACRA2 of the first output, on the scored sample")
    renditions: list[RenditionOutcome] | None = Field(None, description="A profile's renditions, in profile order")


class ProductOutcome(BaseModel):
    row: int = Field(description="1-based line of the CSV (the header is row 1)")
    serial: str
    name: str
    images: list[ImageOutcome]


class RequestResults(RequestSummary):
    total_products: int
    offset: int
    limit: int
    products: list[ProductOutcome]

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "request_id": _RID,
                    "status": "partially_failed",
                    "progress": {"total": 2, "done": 1, "failed": 1},
                    "created_at": "2026-11-25T07:30:21+00:00",
                    "updated_at": "2026-11-25T07:30:39+00:00",
                    "output_csv_url": f"http://127.0.0.1:8000/api/requests/{_RID}/output.csv",
                    "error": "1 of 2 images failed",
                    "filename": "products.csv",
                    "bytes_in": 304115,
                    "bytes_out": 98110,
                    "total_products": 1,
                    "offset": 0,
                    "limit": 100,
                    "products": [
                        {
                            "row": 2,
                            "serial": "1",
                            "name": "SKU1",
                            "images": [
                                {
                                    "index": 0,
                                    "url": "https://example.com/a.jpg",
                                    "status": "done",
                                    "error": None,
                                    "failure_class": None,
                                    "bytes_in": 304115,
                                    "bytes_out": 98110,
                                    "kept_original": False,
                                    "output_url": f"http://127.0.0.1:8000/files/requests/{_RID}/images/0000000.jpg",
                                },
                                {
                                    "index": 1,
                                    "url": "https://example.com/b.jpg",
                                    "status": "failed",
                                    "error": "HTTP 404 from image server",
                                    "failure_class": "permanent",
                                    "bytes_in": None,
                                    "bytes_out": None,
                                    "kept_original": False,
                                    "output_url": None,
                                },
                            ],
                        }
                    ],
                }
            ]
        }
    }
