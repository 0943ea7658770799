"""The caller's recent requests and one request's per-URL results (what the web page and CLI show)."""

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import OwnedRequestDep, OwnerDep, SessionDep, SettingsDep, StoreDep
from api.errors import AUTH_ERRORS, OWNED_REQUEST_ERRORS
from api.schemas.views import RequestList, RequestResults
from image_pipeline.domain.catalog.csv_input import CsvLimits
from image_pipeline.domain.request.history import recent_requests, results_document, summary_document

router = APIRouter(tags=["requests"])


@router.get("/requests", response_model=RequestList, responses=AUTH_ERRORS)
def list_requests(
    owner: OwnerDep,
    session: SessionDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=100, description="How many, newest first")] = 20,
) -> dict:
    """This key's most recent requests with their status and progress, newest first."""
    base = settings.resolved_api_base_url
    return {"requests": [summary_document(r, base) for r in recent_requests(session, owner, limit)]}


@router.get("/requests/{request_id}/results", response_model=RequestResults, responses=OWNED_REQUEST_ERRORS)
def get_results(
    req: OwnedRequestDep,
    session: SessionDep,
    store: StoreDep,
    settings: SettingsDep,
    offset: Annotated[int, Query(ge=0, description="First product (0-based)")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000, description="Products per page")] = 100,
) -> dict:
    """Every input URL of a page of products: pending/done/failed, the error in words, bytes, output URL."""
    return results_document(
        session,
        store,
        req,
        api_base_url=settings.resolved_api_base_url,
        limits=CsvLimits.from_settings(settings),
        offset=offset,
        limit=limit,
    )
