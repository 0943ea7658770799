"""Issue 15 item 7: a black-holed webhook host (DNS that never answers) costs its own key, not others."""

from __future__ import annotations

import os
import socket
import threading
import time

from fastapi.testclient import TestClient

from api.main import create_app
from tests.support.api import AUTH, GOOD, OTHER


def test_a_black_holed_webhook_host_does_not_starve_other_keys(
    make_settings, bucket, webhook_receiver, monkeypatch
) -> None:
    """Fails before the fix: the lookups ran in the event loop's default executor (min(32, cores + 4)
    threads); each timed-out upload left its thread stuck in getaddrinfo, so after a few uploads with a
    black-holed host every other key's webhook upload timed out too ("did not resolve") and the health
    check answered 503."""
    released = threading.Event()
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if isinstance(host, str) and host.endswith(".blackhole.test"):
            released.wait(60)  # a resolver that never answers
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    port = webhook_receiver.server.port
    settings = make_settings(
        s3_bucket=bucket, fetch_connect_timeout=0.3, fetch_allow=f"localhost:{port}", webhook_dns_per_key=2
    )
    default_pool = min(32, (os.cpu_count() or 1) + 4)
    try:
        with TestClient(create_app(settings)) as c:
            answers = []
            for i in range(default_pool + 2):  # enough stuck lookups to fill the old shared pool
                r = c.post(
                    "/api/upload",
                    headers=AUTH,
                    files={"file": ("p.csv", GOOD)},
                    data={"webhook_url": f"https://h{i}.blackhole.test/hook"},
                )
                assert r.status_code == 422 and r.json()["errors"][0]["column"] == "webhook_url", r.text
                answers.append(r.json()["errors"][0]["message"])
            assert answers[0].startswith("the host did not resolve within")

            # Another key, whose webhook host needs a real lookup (localhost), is served as usual.
            start = time.monotonic()
            r = c.post(
                "/api/upload",
                headers=OTHER,
                files={"file": ("p.csv", GOOD)},
                data={"webhook_url": f"http://localhost:{port}/hook"},
            )
            assert r.status_code == 202, r.text
            health = c.get("/api/check_db_connection")
            assert health.status_code == 200, health.text
            assert time.monotonic() - start < 10
            assert "still unanswered" in answers[-1]  # the key's own later lookups: refused at once
    finally:
        released.set()
