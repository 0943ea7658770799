"""The webhook delivery log of a request: deliveries and their attempts."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

_ATTEMPT_EXAMPLE = {
    "attempt": 1,
    "at": "2026-11-25T07:30:40+00:00",
    "status_code": 500,
    "error": "HTTP 500",
    "duration_ms": 41,
}
_DELIVERY_EXAMPLE = {
    "id": 7,
    "event_id": "msg_4f1c2b9e0a7d4c55b1e3a8f06d92c1aa",
    "event_type": "request.completed",
    "url": "https://example.com/hooks/images",
    "state": "delivered",
    "attempt_count": 2,
    "next_attempt_at": None,
    "created_at": "2026-11-25T07:30:39+00:00",
    "finished_at": "2026-11-25T07:30:45+00:00",
    "replay_of": None,
    "attempts": [
        _ATTEMPT_EXAMPLE,
        {**_ATTEMPT_EXAMPLE, "attempt": 2, "at": "2026-11-25T07:30:45+00:00", "status_code": 200, "error": None},
    ],
}


class WebhookAttemptOut(BaseModel):
    attempt: int | None = Field(description="1 for the first attempt of the delivery, 2 for its first retry, ...")
    at: datetime
    status_code: int | None = Field(description="HTTP status the receiver answered; null on timeout/network error")
    error: str | None
    duration_ms: int

    model_config = {"json_schema_extra": {"examples": [_ATTEMPT_EXAMPLE]}}


class WebhookDeliveryOut(BaseModel):
    id: int
    event_id: str = Field(description="The `webhook-id` header: the same on every retry and replay of the event")
    event_type: str
    url: str
    state: Literal["pending", "delivered", "failed", "gone"]
    attempt_count: int
    next_attempt_at: datetime | None = Field(description="When the next retry is due (pending deliveries)")
    created_at: datetime
    finished_at: datetime | None
    replay_of: int | None = Field(description="The delivery this one replays, if it is a replay")
    attempts: list[WebhookAttemptOut]

    model_config = {"json_schema_extra": {"examples": [_DELIVERY_EXAMPLE]}}


class WebhookLog(BaseModel):
    request_id: str
    webhook_url: str | None
    deliveries: list[WebhookDeliveryOut]

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "request_id": "3f6c2a8e-5b1d-4c7e-9a0f-2d8e6b4c1a90",
                    "webhook_url": _DELIVERY_EXAMPLE["url"],
                    "deliveries": [_DELIVERY_EXAMPLE],
                }
            ]
        }
    }
