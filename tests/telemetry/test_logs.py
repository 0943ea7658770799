"""IMGPIPE_LOG_FORMAT=json in this process: each line one JSON object, with the request, run and tenant
of the work it is about (the API's upload, a run's chunk step); plain text by default. The real
processes' lines (uvicorn API, forked run workers) are checked by tests/e2e/test_observability.py."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from image_pipeline.domain.settings import Settings
from image_pipeline.domain.telemetry.logs import configure_logging
from tests.support.api import AUTH
from tests.support.inputs import csv_bytes, make_image
from tests.support.pipeline import run_partition


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """The JSON handler on a buffer (removed afterwards, with the levels it set)."""
    root, ours = logging.getLogger(), [logging.getLogger(n) for n in ("image_pipeline", "imgpipe", "api")]
    handlers, levels = list(root.handlers), [lg.level for lg in ours]
    buf = io.StringIO()
    configure_logging("json", stream=buf)
    yield buf
    root.handlers = handlers
    for lg, level in zip(ours, levels, strict=True):
        lg.setLevel(level)


def lines(buf: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buf.getvalue().splitlines()]  # every line is one JSON object


def test_api_and_run_lines_carry_request_run_and_tenant(
    json_log, settings, resources, instance, image_server, webhook_receiver
) -> None:
    url = image_server.add("/l/a.jpg", make_image("JPEG", (200, 150), seed=1))
    with TestClient(create_app(settings.model_copy(update={"log_format": "json"}))) as client:
        r = client.post("/api/upload", headers=AUTH, files={"file": ("p.csv", csv_bytes([("1", "A", [url])]))})
        assert r.status_code == 202
    rid = r.json()["request_id"]
    [accepted] = [x for x in lines(json_log) if x["message"].startswith("upload accepted")]
    assert accepted["request_id"] == rid and accepted["tenant"].startswith("key_")
    assert accepted["level"] == "INFO" and accepted["logger"] == "imgpipe.api.upload" and accepted["time"]

    result = run_partition(rid, resources, instance)
    chunk_line = next(x for x in lines(json_log) if x["message"].startswith("chunk 0:"))
    assert chunk_line["request_id"] == rid and chunk_line["run_id"] == result.run_id
    assert chunk_line["logger"] == "image_pipeline.domain.request.chunks"


def test_plain_text_is_the_default() -> None:
    assert Settings(_env_file=None).log_format == "text"
    root = logging.getLogger()
    handlers = list(root.handlers)
    configure_logging("text")
    assert root.handlers == handlers
