from fastapi import APIRouter, BackgroundTasks
from fastapi.responses import StreamingResponse

from api.deps import CacheDep, LauncherDep, OwnedRequestDep, OwnerDep, SessionDep, SettingsDep, StoreDep
from api.errors import OWNED_REQUEST_ERRORS, ApiError, request_not_found
from api.schemas.errors import ErrorResponse
from api.schemas.profiles import Manifest
from api.schemas.requests import StatusResponse
from api.streaming import stream_object
from image_pipeline.domain.db.requests import get_request
from image_pipeline.domain.keys import manifest_key
from image_pipeline.domain.request.cancel import CancelRefused, cancel_request, terminate_runs
from image_pipeline.domain.status import status_document
from image_pipeline.domain.webhooks.events import EventLimits

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


@router.post(
    "/requests/{request_id}/cancel",
    response_model=StatusResponse,
    responses={
        **OWNED_REQUEST_ERRORS,
        409: {
            "model": ErrorResponse,
            "description": "the request already finished (completed, partially or wholly failed)",
        },
    },
)
def cancel(
    req: OwnedRequestDep,
    session: SessionDep,
    store: StoreDep,
    cache: CacheDep,
    settings: SettingsDep,
    launcher: LauncherDep,
    background: BackgroundTasks,
) -> dict:
    """Stop a pending or processing request: it becomes `canceled` at once, its run is terminated within
    seconds, the outputs already stored stay listed in its results, and its webhook receives one
    `request.canceled` event. Canceling a canceled request again answers the same; a finished one is 409."""
    try:
        done = cancel_request(
            session, store, req.id, settings.resolved_api_base_url, EventLimits.from_settings(settings)
        )
    except CancelRefused as exc:
        raise ApiError(409, str(exc)) from exc
    doc = status_document(done.request, settings.resolved_api_base_url)
    cache.set(req.id, doc)
    if launcher is not None:  # without a webserver the run stops at its own next check of the request
        background.add_task(terminate_runs, launcher, req.id)
    return doc
