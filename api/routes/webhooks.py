"""The webhook delivery log of a request, and replaying its final event."""

from fastapi import APIRouter, status

from api.deps import OwnerDep, SessionDep, SettingsDep, StoreDep
from api.errors import ApiError
from api.responses import AUTH_ERRORS
from api.schemas import ErrorResponse, WebhookDeliveryOut, WebhookLog
from image_pipeline.domain.db.requests import get_request
from image_pipeline.domain.webhooks.events import EventLimits
from image_pipeline.domain.webhooks.outbox import ReplayRefused, delivery_log, replay_final_event

router = APIRouter(tags=["webhooks"])
NOT_FOUND = {404: {"model": ErrorResponse, "description": "unknown request (or another key's)"}, **AUTH_ERRORS}


@router.get("/requests/{request_id}/webhooks", response_model=WebhookLog, responses=NOT_FOUND)
def list_webhook_deliveries(request_id: str, owner: OwnerDep, session: SessionDep) -> dict:
    """Every delivery of the request's webhook events with every attempt (time, HTTP status or error, duration)."""
    req = get_request(session, request_id, owner)
    if req is None:
        raise ApiError(404, f"request {request_id} not found")
    return {"request_id": req.id, "webhook_url": req.webhook_url, "deliveries": delivery_log(session, req.id)}


@router.post(
    "/requests/{request_id}/webhooks/replay",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=WebhookDeliveryOut,
    responses={**NOT_FOUND, 409: {"model": ErrorResponse, "description": "not finished, or no webhook_url"}},
)
def replay_webhook(
    request_id: str, owner: OwnerDep, session: SessionDep, store: StoreDep, settings: SettingsDep
) -> dict:
    """Send the final event again (same `webhook-id`, same body); it is queued and sent within seconds by
    the retry sender, on the same retry schedule. A delivery of it still waiting for a retry is made due now."""
    req = get_request(session, request_id, owner)
    if req is None:
        raise ApiError(404, f"request {request_id} not found")
    try:
        limits = EventLimits(settings.webhook_max_products, settings.webhook_max_urls)
        delivery = replay_final_event(session, store, req, settings.resolved_api_base_url, limits)
    except ReplayRefused as exc:
        raise ApiError(409, str(exc)) from exc
    [doc] = [d for d in delivery_log(session, req.id) if d["id"] == delivery.id]
    return doc
