"""The webhook delivery log of a request, and replaying its final event."""

from fastapi import APIRouter, Depends, Request, status

from api.deps import OwnedRequestDep, OwnerDep, SessionDep, SettingsDep, StoreDep
from api.errors import OWNED_REQUEST_ERRORS, ApiError
from api.schemas.errors import ErrorResponse
from api.schemas.webhooks import WebhookDeliveryOut, WebhookLog
from image_pipeline.domain.webhooks.events import EventLimits
from image_pipeline.domain.webhooks.outbox import ReplayRefused, delivery_log, replay_final_event

router = APIRouter(tags=["webhooks"])


def limit_replays(request: Request, owner: OwnerDep) -> None:
    """429 when this key replayed too often: each replay makes the service POST to the webhook URL, so
    an unlimited replay would turn the API into an amplifier aimed at that URL."""
    request.app.state.replay_limiter.count(owner)


@router.get("/requests/{request_id}/webhooks", response_model=WebhookLog, responses=OWNED_REQUEST_ERRORS)
def list_webhook_deliveries(req: OwnedRequestDep, session: SessionDep) -> dict:
    """Every delivery of the request's webhook events with every attempt (time, HTTP status or error, duration)."""
    return {"request_id": req.id, "webhook_url": req.webhook_url, "deliveries": delivery_log(session, req.id)}


@router.post(
    "/requests/{request_id}/webhooks/replay",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=WebhookDeliveryOut,
    responses={
        **OWNED_REQUEST_ERRORS,
        409: {"model": ErrorResponse, "description": "not finished, or no webhook_url"},
        429: {"model": ErrorResponse, "description": "replay rate limit of this key reached (see Retry-After)"},
    },
    dependencies=[Depends(limit_replays)],
)
def replay_webhook(req: OwnedRequestDep, session: SessionDep, store: StoreDep, settings: SettingsDep) -> dict:
    """Send the final event again (same `webhook-id`, same body); it is queued and sent within seconds by
    the retry sender, on the same retry schedule. A delivery of it still waiting for a retry is made due now."""
    try:
        limits = EventLimits.from_settings(settings)
        delivery = replay_final_event(session, store, req, settings.resolved_api_base_url, limits)
    except ReplayRefused as exc:
        raise ApiError(409, str(exc)) from exc
    [doc] = [d for d in delivery_log(session, req.id) if d["id"] == delivery.id]
    return doc
