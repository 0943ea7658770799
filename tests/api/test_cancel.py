"""POST /api/requests/{id}/cancel through the HTTP API on the real database: the owner only (another key
gets the status route's 404), one `request.canceled` event in the outbox, a repeated cancel answers the
same, a finished request is 409 in the error shape; a run that starts after the cancel stops at once.
The cancel of a running run through a real daemon is tests/e2e/test_cancel.py."""

from __future__ import annotations

import pytest

from image_pipeline.defs.resources import build_resources
from image_pipeline.domain.request.chunks import compress_request
from image_pipeline.domain.request.context import RequestCanceled
from image_pipeline.domain.request.finish import write_output
from image_pipeline.domain.request.validate import validate_request
from tests.support.api import AUTH, OTHER
from tests.support.inputs import csv_bytes, make_image


def _upload(client, image_server, webhook_url: str | None = None) -> str:
    urls = [image_server.add(f"/cancel/{i}.jpg", make_image(seed=i)) for i in range(2)]
    r = client.post(
        "/api/upload",
        headers=AUTH,
        files={"file": ("p.csv", csv_bytes([("1", "Shoe", urls)]), "text/csv")},
        data={"webhook_url": webhook_url} if webhook_url else {},
    )
    assert r.status_code == 202, r.text
    return r.json()["request_id"]


def test_owner_cancels_once_and_again_the_same(client, image_server, webhook_receiver) -> None:
    rid = _upload(client, image_server, webhook_receiver.url)  # plain http: its host:port is allowed

    other = client.post(f"/api/requests/{rid}/cancel", headers=OTHER)
    assert other.status_code == 404
    assert other.json() == client.get(f"/api/status/{rid}", headers=OTHER).json()  # no oracle
    assert client.get(f"/api/status/{rid}", headers=AUTH).json()["status"] == "pending"

    first = client.post(f"/api/requests/{rid}/cancel", headers=AUTH)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["status"] == "canceled" and body["error"] == "canceled by its owner"
    assert body["output_csv_url"] is None and "owner" not in body
    assert client.get(f"/api/status/{rid}", headers=AUTH).json() == body  # the cache has the cancel too

    again = client.post(f"/api/requests/{rid}/cancel", headers=AUTH)
    assert (again.status_code, again.json()) == (200, body)

    [delivery] = client.get(f"/api/requests/{rid}/webhooks", headers=AUTH).json()["deliveries"]
    assert delivery["event_type"] == "request.canceled"


def test_a_run_after_the_cancel_stops_at_once(client, settings, image_server) -> None:
    rid = _upload(client, image_server)
    assert client.post(f"/api/requests/{rid}/cancel", headers=AUTH).status_code == 200
    ctx = build_resources(settings)["pipeline"].context()
    with pytest.raises(RequestCanceled):
        validate_request(ctx, rid)
    assert image_server.hits == []
    doc = client.get(f"/api/status/{rid}", headers=AUTH).json()
    assert doc["status"] == "canceled" and doc["progress"]["done"] == 0


def test_a_finished_request_is_409(client, settings, image_server) -> None:
    rid = _upload(client, image_server)
    ctx = build_resources(settings)["pipeline"].context()
    for step in (validate_request, compress_request, write_output):
        step(ctx, rid)
    r = client.post(f"/api/requests/{rid}/cancel", headers=AUTH)
    assert r.status_code == 409
    assert r.json() == {
        "detail": "request is completed; only a pending or processing request can be canceled",
        "errors": [],
    }
    assert client.get(f"/api/status/{rid}", headers=AUTH).json()["status"] == "completed"
    unknown = client.post("/api/requests/00000000-0000-0000-0000-000000000000/cancel", headers=AUTH)
    assert unknown.status_code == 404
    assert client.post(f"/api/requests/{rid}/cancel").status_code == 401
