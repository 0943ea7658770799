"""The span tree of one request, in this process: the upload through the API (FastAPI's instrumentation),
then its run's steps, its chunk and its webhook delivery (dg.materialize with the run tag the API's fast
path sets), every span exported to opentelemetry-sdk's InMemorySpanExporter."""

from __future__ import annotations

from collections.abc import Iterator

import dagster as dg
import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from api.main import create_app
from image_pipeline.defs.assets import request_assets
from image_pipeline.defs.partitions import request_partitions_def
from image_pipeline.domain.runs import OWNER_TAG, REQUEST_ID_TAG, TRACEPARENT_TAG
from image_pipeline.domain.telemetry import tracing
from tests.support.api import AUTH
from tests.support.inputs import csv_bytes, make_image
from tests.support.spans import from_sdk, render, shape, tree

ASGI_INTERNAL = (" http receive", " http send")  # FastAPI's instrumentation: one span per ASGI message


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    spans = InMemorySpanExporter()
    tracing.install(tracing.make_provider("test", spans, batch=False), set_global=False)
    yield spans
    tracing.install(None)


def test_span_tree_of_one_request(exporter, settings, resources, instance, image_server, webhook_receiver) -> None:
    urls = [image_server.add(f"/t/{i}.jpg", make_image("JPEG", (320, 240), seed=i)) for i in range(2)]
    with TestClient(create_app(settings)) as client:
        r = client.post(
            "/api/upload",
            headers=AUTH,
            files={"file": ("p.csv", csv_bytes([("1", "Shoe", urls)]))},
            data={"webhook_url": webhook_receiver.url},
        )
        assert r.status_code == 202, r.text
    rid = r.json()["request_id"]
    [upload] = [s for s in exporter.get_finished_spans() if s.name == "POST /api/upload"]
    assert upload.attributes["request_id"] == rid
    # What FastLauncher.launch_run adds to the run's tags (it runs inside the upload's span).
    parent = f"00-{upload.context.trace_id:032x}-{upload.context.span_id:016x}-01"

    instance.add_dynamic_partitions(request_partitions_def.name, [rid])
    result = dg.materialize(
        request_assets,
        partition_key=rid,
        resources=resources,
        instance=instance,
        tags={TRACEPARENT_TAG: parent, REQUEST_ID_TAG: rid, OWNER_TAG: "key_test"},
    )
    assert result.success
    assert len(webhook_receiver.wait_for(1, timeout=30)) == 1

    spans = from_sdk(exporter.get_finished_spans())
    [root] = tree(spans, f"{upload.context.trace_id:032x}")
    print("\n" + render([root]))
    steps = ("validated_csv", "plan_image_chunks", "compress_chunk", "summarize_chunks", "output_csv")
    assert shape(root, ASGI_INTERNAL) == (
        "POST /api/upload",
        (
            (
                "run",
                (
                    *((f"step {s}", (("chunk", ()),) if s == "compress_chunk" else ()) for s in steps),
                    ("step request_notification", (("webhook.delivery", ()),)),
                ),
            ),
        ),
    )
    [run] = [c for c in root.children if c.name == "run"]
    assert run.attributes["request_id"] == rid and run.attributes["run_id"] == result.run_id
    for s in run.children:
        assert (s.attributes["request_id"], s.attributes["run_id"]) == (rid, result.run_id)
        for c in s.children:
            assert c.attributes["request_id"] == rid
    [chunk] = [c for s in run.children for c in s.children if c.name == "chunk"]
    assert (chunk.attributes["urls"], chunk.attributes["done"], chunk.attributes["failed"]) == (2, 2, 0)
    [delivery] = [c for s in run.children for c in s.children if c.name == "webhook.delivery"]
    assert delivery.attributes["outcome"] == "delivered" and delivery.attributes["http.response.status_code"] == 200


def test_tracing_is_off_unless_an_exporter_is_configured() -> None:
    assert tracing.exporter_from_env({}) is None
    assert tracing.exporter_from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}) == "otlp"
    assert tracing.exporter_from_env({"OTEL_TRACES_EXPORTER": "console"}) == "console"
    assert tracing.exporter_from_env({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "x"}) is None
    assert tracing.exporter_from_env({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}) is None
