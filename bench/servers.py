"""The benchmark's servers. The loopback image server (its own process, a fixed delay per image) and the
webhook receiver are the tests' (tests.support.servers: one copy for tests and benchmarks); a moto S3
server runs in its own process here; `upload_urls` posts a CSV of URLs to the API."""

from __future__ import annotations

import sys
from subprocess import DEVNULL, Popen

from image_pipeline.cli.processes import spawn, wait_http
from tests.support.servers import free_port


def start_moto() -> tuple[Popen, str]:
    port = free_port()
    proc = spawn([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], output=DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_http(url, procs=[proc])
    return proc, url


def upload_urls(api: str, key: str, urls: list[str], webhook: str, per_row: int = 1, timeout: float = 60) -> str:
    """POST a CSV of `urls` (`per_row` per product) to the API; returns the request id."""
    import httpx

    rows = [urls[i : i + per_row] for i in range(0, len(urls), per_row)]
    csv = "S.No.,Product Name,Input Image Urls\n" + "".join(f'{i},P{i},"{", ".join(r)}"\n' for i, r in enumerate(rows))
    r = httpx.post(
        f"{api}/api/upload",
        headers={"Authorization": f"Bearer {key}"},
        files={"file": ("b.csv", csv.encode())},
        data={"webhook_url": webhook},
        timeout=timeout,
    )
    assert r.status_code == 202, r.text
    return r.json()["request_id"]
