"""The Grafana dashboard in deploy/grafana is the one bench/dashboard.py makes from its panel list (so the
picture in docs/observability.md shows the same queries), and every metric it queries is one /metrics serves."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.main import create_app
from bench.dashboard import DASHBOARD, dashboard_text


def test_dashboard_file_is_current() -> None:
    assert DASHBOARD.read_text() == dashboard_text(), "run: python -m bench.dashboard json"


def test_every_queried_metric_is_served(make_settings, bucket) -> None:
    with TestClient(create_app(make_settings(s3_bucket=bucket))) as client:
        text = client.get("/metrics").text
    families = {f.name: f.type for f in text_string_to_metric_families(text)}
    queried = set()
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel["targets"]:
            for token in target["expr"].replace("(", " ").replace(")", " ").replace("[", " ").split():
                if token.startswith("imgpipe_"):
                    queried.add(token)
    assert len(queried) == 10
    for name in queried:
        if name.endswith("_bucket"):
            assert families.get(name.removesuffix("_bucket")) == "histogram", name
        elif name.endswith("_total"):
            assert families.get(name.removesuffix("_total")) == "counter", name
        else:
            assert families.get(name) == "gauge", name
