"""The API and the pipeline apply the same CSV limits, from the same settings: a URL the API accepts
under a raised IMGPIPE_MAX_URL_CHARS is fetched by the run, not refused when the run re-parses the upload."""

import dagster as dg
from fastapi.testclient import TestClient

from api.main import create_app
from image_pipeline.defs.assets import request_assets
from image_pipeline.defs.partitions import request_partitions_def
from image_pipeline.defs.resources import build_resources
from image_pipeline.domain.catalog.csv_input import CsvLimits
from tests.support.api import AUTH
from tests.support.inputs import csv_bytes, make_image


def test_a_raised_url_limit_holds_in_the_api_and_the_run(make_settings, bucket, image_server) -> None:
    settings = make_settings(s3_bucket=bucket, fetch_allow=image_server.allow, max_url_chars=4000)
    assert CsvLimits.from_settings(settings).max_url_chars == 4000
    long_url = image_server.add("/l/" + "x" * 2990 + ".jpg", make_image("JPEG", (320, 240)))
    too_long = "https://img.example/" + "y" * 4000 + ".jpg"
    with TestClient(create_app(settings)) as client:
        refused = client.post(
            "/api/upload", headers=AUTH, files={"file": ("p.csv", csv_bytes([("1", "A", [too_long])]))}
        )
        assert refused.status_code == 422
        [error] = refused.json()["errors"]
        assert (error["row"], error["column"]) == (2, "Input Image Urls") and "4000" in error["message"]

        r = client.post("/api/upload", headers=AUTH, files={"file": ("p.csv", csv_bytes([("1", "A", [long_url])]))})
        assert r.status_code == 202, r.text
        rid = r.json()["request_id"]
        with dg.instance_for_test() as instance:
            instance.add_dynamic_partitions(request_partitions_def.name, [rid])
            result = dg.materialize(
                request_assets, partition_key=rid, resources=build_resources(settings), instance=instance
            )
        assert result.success
        status = client.get(f"/api/status/{rid}", headers=AUTH).json()
    assert status["status"] == "completed" and status["progress"] == {"total": 1, "done": 1, "failed": 0}
    assert long_url.removeprefix(f"http://{image_server.allow}") in image_server.hits
