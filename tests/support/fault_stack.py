"""The product as real processes (uvicorn API, dagster-daemon with PostgreSQL run storage) that a test
can kill and restart one by one, plus a slow image server so a run is mid-flight when the fault hits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from image_pipeline.cli.processes import answers, spawn, stop
from tests.support.inputs import make_image
from tests.support.paths import BIN, ROOT
from tests.support.servers import ImageServer, delayed_route, free_port
from tests.support.services import WEBHOOK_SECRET
from tests.support.stack import dagster_home

KEY = "fault-key-0000000000000000000000000"  # at least IMGPIPE_API_KEY_MIN_CHARS (16)
AUTH = {"Authorization": f"Bearer {KEY}"}


def slow_images(server: ImageServer, n: int, delay_s: float, prefix: str = "/slow") -> list[str]:
    """`n` distinct JPEGs, each answered after `delay_s` seconds."""
    urls = []
    for i in range(n):
        path = f"{prefix}/{i}.jpg"
        server.routes[path] = delayed_route(make_image("JPEG", (320, 240), seed=100 + i), delay_s)
        urls.append(server.url(path))
    return urls


@dataclass
class Stack:
    env: dict[str, str]
    logs: Path
    api_port: int = field(default_factory=free_port)
    api_proc: subprocess.Popen | None = None
    daemon_proc: subprocess.Popen | None = None
    _n: int = 0

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        self._n += 1
        # its own process group: killing it takes its children along
        env = dict(self.env, IMGPIPE_API_PORT=str(self.api_port))
        return spawn(argv, env=env, cwd=ROOT, output=self.logs / f"{name}-{self._n}.log")

    def start_api(self) -> None:
        self.api_proc = self._spawn(
            "api", [sys.executable, "-m", "uvicorn", "--factory", "api.main:create_app", "--port", str(self.api_port)]
        )
        wait_until(lambda: answers(f"{self.api}/api/check_db_connection"), 60, "API did not come up", self.tail)

    def start_daemon(self) -> None:
        self.daemon_proc = self._spawn(
            "daemon", [str(BIN / "dagster-daemon"), "run", "-m", "image_pipeline.definitions"]
        )

    def kill_api(self, sig: int = signal.SIGKILL) -> None:
        _kill_group(self.api_proc, sig)

    def kill_daemon(self, sig: int = signal.SIGKILL) -> None:
        """The daemon and everything it started (code server, run workers)."""
        _kill_group(self.daemon_proc, sig)

    def stop(self) -> None:
        for p in (self.api_proc, self.daemon_proc):
            _kill_group(p, signal.SIGTERM)

    def tail(self, n: int = 3000) -> str:
        out = []
        for f in sorted(self.logs.glob("*.log")):
            out.append(f"--- {f.name}\n{f.read_text(errors='replace')[-n:]}")
        return "\n".join(out)

    # --- HTTP helpers -----------------------------------------------------------------------------

    def upload(self, csv: bytes, webhook_url: str | None = None) -> str:
        r = httpx.post(
            f"{self.api}/api/upload",
            headers=AUTH,
            timeout=30,
            files={"file": ("p.csv", csv, "text/csv")},
            data={"webhook_url": webhook_url} if webhook_url else {},
        )
        assert r.status_code == 202, r.text
        return r.json()["request_id"]

    def status(self, rid: str) -> dict:
        r = httpx.get(f"{self.api}/api/status/{rid}", headers=AUTH, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()

    def webhooks(self, rid: str) -> dict:
        r = httpx.get(f"{self.api}/api/requests/{rid}/webhooks", headers=AUTH, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()

    def wait_status(self, rid: str, pred: Callable[[dict], bool], timeout: float = 180) -> dict:
        last: dict = {}

        def check() -> bool:
            nonlocal last
            try:
                last = self.status(rid)
            except httpx.HTTPError:
                return False
            return pred(last)

        wait_until(check, timeout, lambda: f"status stuck at {last}", self.tail)
        return last


def _kill_group(proc: subprocess.Popen | None, sig: int) -> None:
    """`sig` to the group of a process still running, then SIGKILL to what is left of it after 30 s."""
    if proc is not None and proc.poll() is None:
        stop(proc, grace=30, sig=sig)


def wait_until(pred: Callable[[], bool], timeout: float, what, tail: Callable[[], str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            msg = what() if callable(what) else what
            raise AssertionError(f"{msg}\n{tail() if tail else ''}")
        time.sleep(0.3)


def make_env(
    tmp_path: Path,
    *,
    database_url: str,
    dagster_pg: str,
    redis_url: str,
    bucket: str,
    s3_endpoint: str,
    allow: str,
    warm_launcher: bool = False,
) -> dict[str, str]:
    """`warm_launcher`: runs are forks of a warm process (WarmForkRunLauncher, as `make up` runs them)."""
    from image_pipeline.dagster_plugins.prepare_storage import create_dagster_storage

    home = dagster_home(tmp_path, warm_launcher)
    env = dict(
        os.environ,
        DAGSTER_HOME=str(home),
        IMGPIPE_DAGSTER_PG_URL=dagster_pg,
        IMGPIPE_DATABASE_URL=database_url,
        IMGPIPE_REDIS_URL=redis_url,
        IMGPIPE_S3_BUCKET=bucket,
        IMGPIPE_S3_ENDPOINT_URL=s3_endpoint,
        IMGPIPE_API_KEYS=KEY,
        IMGPIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
        IMGPIPE_DATA_DIR=str(tmp_path / "data"),
        IMGPIPE_FETCH_ALLOW=allow,
        IMGPIPE_FETCH_CONCURRENCY="2",
        IMGPIPE_PER_HOST_CONCURRENCY="2",
        IMGPIPE_WEBHOOK_RETRY_SCHEDULE="1,1,2",
        IMGPIPE_WEBHOOK_TIMEOUT="3",
    )
    create_dagster_storage(home, env)
    return env
