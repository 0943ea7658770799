"""The product as real processes (uvicorn API, dagster-daemon with PostgreSQL run storage, optionally the
code location as its own process as compose runs it) that a test can kill and restart one by one, plus a
slow image server so a run is mid-flight when the fault hits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from image_pipeline.cli.processes import answers, spawn, stop
from tests.support.inputs import make_image
from tests.support.paths import BIN, ROOT
from tests.support.servers import ImageServer, delayed_route, free_port
from tests.support.services import WEBHOOK_SECRET, create_pg_database, drop_pg_database
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
    # Set: the code location is its own process (`start_code_location`) on this port, as compose runs
    # it, and the daemon loads it from a workspace.yaml. Unset: the daemon starts its own code server.
    code_port: int | None = None
    code_proc: subprocess.Popen | None = None
    _n: int = 0

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def _spawn(self, name: str, argv: list[str], **extra_env: str) -> subprocess.Popen:
        self._n += 1
        # its own process group: killing it takes its children along
        env = dict(self.env, IMGPIPE_API_PORT=str(self.api_port), **extra_env)
        return spawn(argv, env=env, cwd=ROOT, output=self.logs / f"{name}-{self._n}.log")

    def start_api(self) -> None:
        self.api_proc = self._spawn(
            "api", [sys.executable, "-m", "uvicorn", "--factory", "api.main:create_app", "--port", str(self.api_port)]
        )
        wait_until(lambda: answers(f"{self.api}/api/check_db_connection"), 60, "API did not come up", self.tail)

    def start_daemon(self, **env: str) -> None:
        """`env`: extra environment for this daemon only."""
        if self.code_port:
            target = ["-w", str(self._workspace())]
        else:
            target = ["-m", "image_pipeline.definitions"]
        self.daemon_proc = self._spawn("daemon", [str(BIN / "dagster-daemon"), "run", *target], **env)

    def start_code_location(self) -> None:
        """`dagster code-server start` in its own process group, as the compose service `code-location`:
        the runs it launches (Dagster's default launcher) are its children and die with it."""
        assert self.code_port, "a stack made with code_port"
        cmd = [str(BIN / "dagster"), "code-server", "start", "-h", "127.0.0.1", "-p", str(self.code_port)]
        self.code_proc = self._spawn("code-location", [*cmd, "-m", "image_pipeline.definitions"])
        wait_until(lambda: _code_loaded(self.code_port), 90, "the code location did not load", self.tail)

    def kill_code_location(self) -> None:
        """SIGKILL to the code location and everything it started (its run workers): a container crash."""
        _kill_group(self.code_proc, signal.SIGKILL)

    def _workspace(self) -> Path:
        path = self.logs.parent / "workspace.yaml"
        path.write_text(
            f"load_from:\n  - grpc_server:\n      host: 127.0.0.1\n      port: {self.code_port}\n"
            "      location_name: image_pipeline\n"
        )
        return path

    def kill_api(self, sig: int = signal.SIGKILL) -> None:
        _kill_group(self.api_proc, sig)

    def kill_daemon(self, sig: int = signal.SIGKILL) -> None:
        """The daemon and everything it started (code server, run workers)."""
        _kill_group(self.daemon_proc, sig)

    def stop(self) -> None:
        for p in (self.api_proc, self.daemon_proc, self.code_proc):
            _kill_group(p, signal.SIGTERM)

    @contextmanager
    def instance(self) -> Iterator:  # DagsterInstance
        """The stack's Dagster instance, opened in this process (its dagster.yaml names the storage
        through IMGPIPE_DAGSTER_PG_URL, set here while the instance is open)."""
        import dagster as dg

        name = "IMGPIPE_DAGSTER_PG_URL"
        before = os.environ.get(name)
        os.environ[name] = self.env[name]
        try:
            with dg.DagsterInstance.from_config(self.env["DAGSTER_HOME"]) as instance:
                yield instance
        finally:
            if before is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = before

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


def _code_loaded(port: int) -> bool:
    """The code server answers and has loaded the definitions (it answers an error until then)."""
    from dagster._grpc.client import DagsterGrpcClient
    from dagster._serdes import deserialize_value
    from dagster._utils.error import SerializableErrorInfo

    try:
        reply = deserialize_value(DagsterGrpcClient(port=port, host="127.0.0.1").list_repositories())
    except Exception:  # not listening yet
        return False
    return not isinstance(reply, SerializableErrorInfo)


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
    instance_overrides: dict | None = None,
) -> dict[str, str]:
    """`warm_launcher`: runs are forks of a warm process (WarmForkRunLauncher, as `make up` runs them);
    `instance_overrides`: sections merged into the instance's dagster.yaml."""
    from image_pipeline.dagster_plugins.prepare_storage import create_dagster_storage

    home = dagster_home(tmp_path, warm_launcher, overrides=instance_overrides)
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
        IMGPIPE_SYNC_MEMORY="false",  # per-request output keys, as the stack's tests expect; `env` may turn it on
        IMGPIPE_FETCH_ALLOW=allow,
        IMGPIPE_FETCH_CONCURRENCY="2",
        IMGPIPE_PER_HOST_CONCURRENCY="2",
        IMGPIPE_WEBHOOK_RETRY_SCHEDULE="1,1,2",
        IMGPIPE_WEBHOOK_TIMEOUT="3",
    )
    create_dagster_storage(home, env)
    return env


@contextmanager
def fault_stack(
    tmp_path: Path,
    *,
    database_url: str,
    redis_url: str,
    bucket: str,
    s3_endpoint: str,
    allow: str,
    warm_launcher: bool = False,
    code_location: bool = False,
    instance_overrides: dict | None = None,
    **env: str,
) -> Iterator[Stack]:
    """A Stack (nothing started yet) on its own Dagster database, stopped and dropped at the end.
    `code_location`: the code location runs as its own process (`Stack.start_code_location`);
    `env`: IMGPIPE_* settings of the test."""
    dagster_pg = create_pg_database("imgpipe_fault_dagster")
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    base = make_env(
        tmp_path,
        database_url=database_url,
        dagster_pg=dagster_pg,
        redis_url=redis_url,
        bucket=bucket,
        s3_endpoint=s3_endpoint,
        allow=allow,
        warm_launcher=warm_launcher,
        instance_overrides=instance_overrides,
    )
    stack = Stack({**base, **env}, logs, code_port=free_port() if code_location else None)
    try:
        yield stack
    finally:
        stack.stop()
        drop_pg_database(dagster_pg)
