"""Output profiles and the request manifest, as the API shows them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from image_pipeline.domain.images.failures import FailureClass

_THUMB = {"name": "thumb", "format": "webp", "quality": 80, "width": 300, "height": 300, "fit": "inside"}


class ProfileDocument(BaseModel):
    name: str
    source: Literal["builtin", "tenant"] = Field(description="built in, or this key's own")
    renditions: list[dict[str, Any]] = Field(description="In order: the first fills `Output Image Urls`")

    model_config = {"json_schema_extra": {"examples": [{"name": "shop", "source": "tenant", "renditions": [_THUMB]}]}}


class ProfileList(BaseModel):
    profiles: list[ProfileDocument]

    model_config = {
        "json_schema_extra": {
            "examples": [
                {"profiles": [{"name": "default", "source": "builtin", "renditions": []},
                              {"name": "shop", "source": "tenant", "renditions": [_THUMB]}]}
            ]
        }
    }  # fmt: skip


class ManifestRendition(BaseModel):
    name: str
    url: str | None
    status: Literal["done", "failed"]
    format: str | None = None
    width: int | None = None
    height: int | None = None
    bytes: int | None = None
    quality: int | None = None
    kept_original: bool | None = None
    score: float | None = Field(None, description="SSIMULACRA2 of the output's centre crop, on the scored sample")


class ManifestUrl(BaseModel):
    idx: int
    row: int
    url: str
    status: Literal["done", "failed"]
    error: str | None
    failure_class: FailureClass | None = Field(None, description="Why it failed, as a class (see the results)")
    renditions: list[ManifestRendition]


class Manifest(BaseModel):
    request_id: str
    profile: dict[str, Any]
    urls: list[ManifestUrl]

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "request_id": "3f6c2b1e-5d0a-4c1b-9a43-2e8f0c7d9b11",
                    "profile": {"name": "shop", "renditions": [_THUMB]},
                    "urls": [
                        {"idx": 0, "row": 2, "url": "https://example.com/a.jpg", "status": "done", "error": None,
                         "failure_class": None,
                         "renditions": [{"name": "thumb", "status": "done", "format": "webp", "width": 300,
                                         "height": 225, "bytes": 9120, "quality": 80, "kept_original": False,
                                         "score": 74.2,
                                         "url": "http://127.0.0.1:8000/files/requests/3f6c.../images/0000000.webp"}]}
                    ],
                }
            ]
        }
    }  # fmt: skip
