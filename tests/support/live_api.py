"""A real uvicorn API process for tests that talk HTTP to it (browser, CLI)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from image_pipeline.cli.processes import spawn, stop, wait_http
from image_pipeline.domain.settings import Settings
from tests.support.paths import ROOT


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
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "api.main:create_app", "--port", str(settings.api_port)]
    proc = spawn(cmd, env=env, cwd=ROOT, output=log_path)
    base = f"http://127.0.0.1:{settings.api_port}"
    try:
        wait_http(f"{base}/api/check_db_connection", 60, procs=[proc], detail=lambda: log_path.read_text()[-3000:])
        yield base
    finally:
        stop(proc, grace=20)
