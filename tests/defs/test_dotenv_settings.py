"""A setting given only in `.env` means the same in every process that builds the resources from its
own settings (`build_resources()` with no arguments, as the code location does): the run's first webhook
attempt and the retry sensor's both sign with a webhook secret that is in `.env` and not in the
environment. (The resource once took the secret from the process environment only, so whether webhooks
were signed depended on how the process had been started.)"""

import time

import dagster as dg
import pytest
from fastapi.testclient import TestClient
from standardwebhooks.webhooks import Webhook

from api.main import create_app
from image_pipeline.defs.assets import request_assets
from image_pipeline.defs.partitions import request_partitions_def
from image_pipeline.defs.resources import build_resources
from image_pipeline.defs.sensors import webhook_retry_sensor
from image_pipeline.domain.settings import get_settings
from tests.support.inputs import csv_bytes, make_image
from tests.support.live_api import settings_env


@pytest.fixture
def dotenv_only_secret(make_settings, bucket, image_server, webhook_receiver, tmp_path, monkeypatch):
    """This process's environment holds every setting of the test but the secret, which is in ./.env."""
    settings = make_settings(
        s3_bucket=bucket,
        fetch_allow=f"{image_server.allow},{webhook_receiver.allow}",
        webhook_retry_schedule="1",
        webhook_timeout=2,
    )
    env = settings_env(settings)
    secret = env.pop("IMGPIPE_WEBHOOK_SECRET")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("IMGPIPE_WEBHOOK_SECRET", raising=False)
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    (workdir / ".env").write_text(f"IMGPIPE_WEBHOOK_SECRET={secret}\n")
    monkeypatch.chdir(workdir)
    get_settings.cache_clear()
    yield settings, secret
    get_settings.cache_clear()


def test_a_secret_only_in_dotenv_signs_the_run_and_the_retry_sensor(
    dotenv_only_secret,
    image_server,
    webhook_receiver,
) -> None:
    settings, secret = dotenv_only_secret
    resources = build_resources()  # from this process's settings: the environment and ./.env
    assert resources["pipeline"].settings.webhook_secret == secret
    url = image_server.add("/d/a.jpg", make_image(seed=5))
    with TestClient(create_app(settings)) as client:
        r = client.post(
            "/api/upload",
            headers={"Authorization": "Bearer test-key-1"},
            files={"file": ("p.csv", csv_bytes([("1", "Shoe", [url])]))},
            data={"webhook_url": webhook_receiver.url},
        )
    assert r.status_code == 202, r.text
    rid = r.json()["request_id"]
    webhook_receiver.responses = [500]  # the run's attempt fails; the retry sensor sends it again
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(request_partitions_def.name, [rid])
        assert dg.materialize(request_assets, partition_key=rid, resources=resources, instance=instance).success
        deadline = time.monotonic() + 30
        while len(webhook_receiver.deliveries) < 2:
            assert time.monotonic() < deadline, webhook_receiver.deliveries
            time.sleep(0.5)
            with dg.build_sensor_context(instance=instance, resources=resources) as ctx:
                webhook_retry_sensor(ctx)
    first, retry = webhook_receiver.deliveries[:2]
    for delivery in (first, retry):
        assert "webhook-signature" in delivery.headers, delivery.headers
        assert Webhook(secret).verify(delivery.body, delivery.headers)["request_id"] == rid
