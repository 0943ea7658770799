"""A failed URL's failure class reaches the caller everywhere its error does: the per-URL results, the
manifest and the webhook event (the request processed by the real pipeline steps, the event delivered
to a real receiver)."""

from __future__ import annotations

from standardwebhooks.webhooks import Webhook

from image_pipeline.defs.resources import build_resources
from image_pipeline.domain.request.chunks import compress_request
from image_pipeline.domain.request.finish import notify, write_output
from image_pipeline.domain.request.validate import validate_request
from tests.support.api import AUTH
from tests.support.inputs import csv_bytes, make_image
from tests.support.services import WEBHOOK_SECRET


def test_failure_class_in_results_manifest_and_webhook(client, settings, image_server, webhook_receiver) -> None:
    ok = image_server.add("/fc/ok.jpg", make_image(seed=1))
    page = image_server.add("/fc/page.jpg", b"<!doctype html><html></html>", "text/html")
    gone = image_server.url("/fc/gone.jpg")  # 404
    r = client.post(
        "/api/upload",
        headers=AUTH,
        files={"file": ("p.csv", csv_bytes([("1", "Shoe", [ok, page, gone])]), "text/csv")},
        data={"webhook_url": webhook_receiver.url},
    )
    assert r.status_code == 202, r.text
    rid = r.json()["request_id"]
    ctx = build_resources(settings)["pipeline"].context()
    for step in (validate_request, compress_request, write_output, notify):
        step(ctx, rid)

    expected = [None, "invalid_image", "permanent"]
    results = client.get(f"/api/requests/{rid}/results", headers=AUTH).json()
    assert [i["failure_class"] for i in results["products"][0]["images"]] == expected
    manifest = client.get(f"/api/requests/{rid}/manifest.json", headers=AUTH).json()
    assert [u["failure_class"] for u in manifest["urls"]] == expected
    [delivery] = webhook_receiver.wait_for(1, timeout=30)
    event = Webhook(WEBHOOK_SECRET).verify(delivery.body, delivery.headers)
    assert event["type"] == "request.partially_failed"
    assert event["data"]["products"][0]["errors"] == [
        {"url": page, "error": results["products"][0]["images"][1]["error"], "failure_class": "invalid_image"},
        {"url": gone, "error": "HTTP 404 from image server", "failure_class": "permanent"},
    ]
