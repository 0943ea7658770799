from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from api.deps import CacheDep, OwnedRequestDep, OwnerDep, SessionDep, SettingsDep, StoreDep
from api.errors import OWNED_REQUEST_ERRORS, ApiError, request_not_found
from api.schemas.errors import ErrorResponse
from api.schemas.profiles import Manifest
from api.schemas.requests import StatusResponse
from api.streaming import stream_object
from image_pipeline.domain.db.requests import get_request
from image_pipeline.domain.keys import manifest_key
from image_pipeline.domain.status import status_document

router = APIRouter(tags=["requests"])


@router.get("/status/{request_id}", response_model=StatusResponse, responses=OWNED_REQUEST_ERRORS)
@router.get("/status/{request_id}/", response_model=StatusResponse, include_in_schema=False)
def get_status(request_id: str, owner: OwnerDep, session: SessionDep, cache: CacheDep, settings: SettingsDep) -> dict:
    """Status and progress of a request: from the cache when it has it, else from the database."""
    doc = cache.get(request_id)
    if doc is None:
        req = get_request(session, request_id)
        if req is None:
            raise request_not_found(request_id)
        doc = status_document(req, settings.resolved_api_base_url)
        cache.set(request_id, doc)
    if doc.get("owner") != owner:
        raise request_not_found(request_id)
    return doc


@router.get(
    "/requests/{request_id}/output.csv",
    response_class=StreamingResponse,
    responses={
        **OWNED_REQUEST_ERRORS,
        409: {"model": ErrorResponse, "description": "not finished yet"},
        200: {
            "content": {
                "text/csv": {
                    "example": "S.No.,Product Name,Input Image Urls,Output Image Urls\r\n"
                    "1,SKU1,https://example.com/a.jpg,http://127.0.0.1:8000/files/requests/3f6c.../images/0000000.jpg\r\n"
                }
            },
            "description": "the output CSV",
        },
    },
)
def get_output_csv(req: OwnedRequestDep, store: StoreDep) -> StreamingResponse:
    """The output CSV: the input columns plus `Output Image Urls`."""
    if not req.output_csv_key:
        raise ApiError(409, f"output not ready: request is {req.status}")
    attachment = {"Content-Disposition": f'attachment; filename="{req.id}-output.csv"'}
    missing = "output CSV is no longer stored"
    return stream_object(store, req.output_csv_key, "text/csv; charset=utf-8", attachment, missing=missing)


@router.get(
    "/requests/{request_id}/manifest.json",
    response_class=StreamingResponse,
    responses={
        **OWNED_REQUEST_ERRORS,
        409: {"model": ErrorResponse, "description": "the request is not finished yet"},
        200: {"model": Manifest, "description": "per URL and rendition, what was made"},
    },
)
def get_manifest(req: OwnedRequestDep, store: StoreDep) -> StreamingResponse:
    """The request's manifest: its profile, and per URL each rendition's URL, format, size, bytes, quality."""
    if not req.output_csv_key:
        raise ApiError(409, f"manifest not ready: request is {req.status}")
    return stream_object(store, manifest_key(req.id), "application/json", {}, missing="manifest is not stored")
