"""`imgpipe serve` runs the stack like `make up` (embedded defaults) and stops cleanly on SIGTERM."""

import os
import signal
import sys
import time
from pathlib import Path

import httpx

from image_pipeline.cli.processes import signal_group, spawn
from tests.support.paths import ROOT
from tests.support.servers import free_port

IMGPIPE = str(Path(sys.executable).parent / "imgpipe")


def test_serve_runs_api_page_and_dagster_then_stops(tmp_path) -> None:
    api_port, ui_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMGPIPE_")}
    env.update(
        IMGPIPE_DATA_DIR=str(tmp_path / "data"),
        IMGPIPE_API_PORT=str(api_port),
        IMGPIPE_UI_PORT=str(ui_port),
        IMGPIPE_API_KEYS="serve-key-0000000000000000000000000",  # at least IMGPIPE_API_KEY_MIN_CHARS (16)
    )
    stale = tmp_path / "data" / "metrics" / "counter_999999.db"  # a previous start's, of a process long gone
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old counts")
    log = tmp_path / "serve.log"
    proc = spawn([IMGPIPE, "serve"], env=env, cwd=ROOT, output=log)  # its own group, the stack's children in it
    try:
        deadline = time.monotonic() + 180
        api, ui = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{ui_port}"
        up = set()
        while up != {"api", "ui"}:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "stack not up:\n" + log.read_text()[-3000:]
            for name, url in (("api", f"{api}/api/check_db_connection"), ("ui", f"{ui}/server_info")):
                try:
                    if httpx.get(url, timeout=2).status_code == 200:
                        up.add(name)
                except httpx.HTTPError:
                    pass
            time.sleep(0.5)
        page = httpx.get(f"{api}/")
        assert page.status_code == 200 and "Upload and process" in page.text
        listing = httpx.get(
            f"{api}/api/requests", headers={"Authorization": "Bearer serve-key-0000000000000000000000000"}
        )
        assert listing.status_code == 200 and listing.json() == {"requests": []}
        # /metrics adds up every process's files in <data dir>/metrics (PROMETHEUS_MULTIPROC_DIR), emptied at start.
        metrics = httpx.get(f"{api}/metrics")
        assert metrics.status_code == 200 and "imgpipe_db_up 1.0" in metrics.text
        assert 'imgpipe_stage_seconds_count{stage="fetch"} 0.0' in metrics.text and not stale.exists()
        assert list(stale.parent.glob("counter_*.db")), "the stack's processes write their metrics there"
        while "Web page" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(60)
        finally:
            signal_group(proc, signal.SIGKILL)  # whatever it left behind
    assert code == 0, log.read_text()[-3000:]
    assert f"Web page   {api}/" in log.read_text() and f"Metrics    {api}/metrics" in log.read_text()
