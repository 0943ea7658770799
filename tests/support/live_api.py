"""A real uvicorn API process for tests that talk HTTP to it (browser, CLI)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from image_pipeline.domain.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def settings_env(settings: Settings) -> dict[str, str]:
    """The IMGPIPE_* environment that reproduces `settings` in another process."""
    env = {}
    for name, value in settings.model_dump().items():
        if value is not None and value != "":
            env[f"IMGPIPE_{name.upper()}"] = str(value)
    return env


@contextmanager
def live_api(settings: Settings, log_path: Path) -> Iterator[str]:
    """Start `uvicorn --factory api.main:create_app` on settings.api_port; yield its base URL; stop it."""
    env = dict(os.environ, **settings_env(settings))
    log = open(log_path, "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "api.main:create_app", "--port", str(settings.api_port)],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{settings.api_port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                if httpx.get(f"{base}/api/check_db_connection", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, "API exited:\n" + log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, "API did not start:\n" + log_path.read_text()[-3000:]
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def kill_group(proc: subprocess.Popen) -> None:
    """Kill what is left of a process started with `start_new_session=True` (e.g. the code server a
    dagster daemon or webserver spawned, which outlives its parent)."""
    import signal

    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
