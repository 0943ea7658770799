"""Settings reach every real process the same way, here from `.env` alone.

The stack (API, daemon, runs on Dagster's default launcher) runs in a directory whose `.env` holds the
webhook secret and a raised URL limit, neither of them in the environment. The API accepts a
3,000-character image URL and the run fetches it: the pipeline re-parses the upload with the same
limits (it once used the default 2,048 characters there: a 202, then a failed request). The run's first
webhook attempt and the daemon's retry are both signed with the secret from `.env`. (Dagster's own
processes also load `.env` into their environment; tests/defs/test_dotenv_settings.py covers a process
that does not.)"""

from __future__ import annotations

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from tests.support.inputs import csv_bytes, make_image
from tests.support.services import WEBHOOK_SECRET
from tests.support.stack import KEY, running_stack

LONG_PATH = "/long/" + "p" * 2990 + ".jpg"


@pytest.fixture
def dotenv_stack(tmp_path, image_server, webhook_receiver):
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    (workdir / ".env").write_text(
        f"IMGPIPE_WEBHOOK_SECRET={WEBHOOK_SECRET}\nIMGPIPE_MAX_URL_CHARS=4000\nIMGPIPE_WEBHOOK_RETRY_SCHEDULE=1\n"
    )
    env = {
        "IMGPIPE_WEBHOOK_SECRET": None,  # only in .env
        "IMGPIPE_MAX_URL_CHARS": None,
        "IMGPIPE_WEBHOOK_RETRY_SCHEDULE": None,
        "IMGPIPE_FETCH_ALLOW": f"{image_server.allow},{webhook_receiver.allow}",
    }
    with running_stack(tmp_path, env, cwd=workdir) as stack:
        yield stack


def test_dotenv_settings_reach_api_run_worker_and_daemon(dotenv_stack, image_server, webhook_receiver) -> None:
    url = image_server.add(LONG_PATH, make_image("JPEG", (400, 300), seed=3))
    assert len(url) > 3000
    webhook_receiver.responses = [500]  # the run's attempt fails: the retry comes from the daemon's sensor
    auth = {"Authorization": f"Bearer {KEY}"}
    r = httpx.post(
        f"{dotenv_stack.api}/api/upload",
        headers=auth,
        timeout=30,
        files={"file": ("p.csv", csv_bytes([("1", "Long", [url])]))},
        data={"webhook_url": webhook_receiver.url},
    )
    assert r.status_code == 202, r.text
    rid = r.json()["request_id"]
    try:
        first, retry = webhook_receiver.wait_for(2, timeout=120)
    except AssertionError:
        pytest.fail("webhooks missing; daemon log:\n" + dotenv_stack.log_tail("daemon"))
    verifier = Webhook(WEBHOOK_SECRET)
    for delivery in (first, retry):
        assert "webhook-signature" in delivery.headers, delivery.headers
        event = verifier.verify(delivery.body, delivery.headers)
        assert event["request_id"] == rid and event["type"] == "request.completed", event
    assert first.headers["webhook-id"] == retry.headers["webhook-id"]
    assert LONG_PATH in image_server.hits
    status = httpx.get(f"{dotenv_stack.api}/api/status/{rid}", headers=auth).json()
    assert status["status"] == "completed" and status["progress"] == {"total": 1, "done": 1, "failed": 0}
