"""The product as real processes for end-to-end tests: uvicorn API + dagster-daemon (sensor, run queue,
run workers) on PostgreSQL run/event storage (the repo's dagster.yaml), plus any extra processes a test
needs (e.g. Celery workers). Everything is started in its own process group and stopped at the end."""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from image_pipeline.cli.processes import spawn, stop, wait_http
from image_pipeline.dagster_plugins.prepare_storage import create_dagster_storage
from image_pipeline.dagster_plugins.warm_fork_launcher import WARM_LAUNCHER_YAML
from tests.support.paths import BIN, ROOT
from tests.support.servers import free_port
from tests.support.services import WEBHOOK_SECRET, create_pg_database, drop_pg_database

KEY = "e2e-key-000000000000000000000000000"  # IMGPIPE_API_KEY_MIN_CHARS: 32


@dataclass
class Stack:
    api: str
    env: dict[str, str]
    logs: Path
    ui: str | None = None  # the Dagster webserver, when the stack runs one

    def log_tail(self, name: str, chars: int = 4000) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def dagster_home(
    tmp_path: Path,
    warm_launcher: bool = False,
    instance_yaml: Path = ROOT / "dagster.yaml",
    overrides: dict | None = None,
) -> Path:
    """A DAGSTER_HOME with the repo's dagster.yaml (or `instance_yaml`); `warm_launcher`: runs fork from
    a warm process (WarmForkRunLauncher, as `make up` runs them) instead of Dagster's default launcher.
    `overrides`: sections merged into the instance file, e.g. {"concurrency": {"runs": {...}}}."""
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    shutil.copyfile(instance_yaml, home / "dagster.yaml")
    if overrides:
        config = _merged(yaml.safe_load((home / "dagster.yaml").read_text()), overrides)
        (home / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    if warm_launcher:
        with open(home / "dagster.yaml", "a") as f:
            f.write(WARM_LAUNCHER_YAML)
    return home


def _merged(base: dict, overrides: dict) -> dict:
    out = dict(base)
    for key, value in overrides.items():
        out[key] = _merged(out.get(key) or {}, value) if isinstance(value, dict) else value
    return out


@contextmanager
def running_stack(
    tmp_path: Path,
    env: dict[str, str | None],
    extra: dict[str, list[str]] | None = None,
    *,
    webserver: bool = False,
    warm_launcher: bool = False,
    instance_yaml: Path = ROOT / "dagster.yaml",
    cwd: Path = ROOT,
) -> Iterator[Stack]:
    """`env`: IMGPIPE_* settings of the test; `extra`: more commands to run beside the API and daemon.
    `webserver`: also run dagster-webserver, which the API's fast path launches runs through.
    `warm_launcher`: runs fork from a warm process (the launcher `make up` uses), not Dagster's default.
    `instance_yaml`: the Dagster instance to run (default: the repo's dagster.yaml).
    `cwd`: where the processes run (their `.env` is read from there); an `env` value of None unsets it.

    The stack gets its own app database and Dagster database: requests other tests left pending in the
    session's database must not be picked up by this daemon."""
    app_pg = create_pg_database("imgpipe_e2e_app")
    dagster_pg = create_pg_database("imgpipe_e2e_dagster")
    home = dagster_home(tmp_path, warm_launcher, instance_yaml)
    api_port, ui_port = free_port(), free_port()
    ui = f"http://127.0.0.1:{ui_port}" if webserver else None
    full_env = dict(
        os.environ,
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        DAGSTER_HOME=str(home),
        IMGPIPE_DAGSTER_PG_URL=dagster_pg,
        IMGPIPE_DATABASE_URL=app_pg,
        IMGPIPE_API_KEYS=KEY,
        IMGPIPE_API_PORT=str(api_port),
        IMGPIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
        IMGPIPE_DATA_DIR=str(tmp_path / "data"),
        **({"IMGPIPE_DAGSTER_URL": ui} if ui else {}),
        # Per-request output keys, as the stack's tests expect; `env` may turn the sync memory on.
        **{"IMGPIPE_SYNC_MEMORY": "false", **{k: v for k, v in env.items() if v is not None}},
    )
    for name in [k for k, v in env.items() if v is None]:
        full_env.pop(name, None)
    create_dagster_storage(home, full_env)  # before the processes that would race to create it
    logs = tmp_path / "logs"
    logs.mkdir()
    commands = {
        "api": [sys.executable, "-m", "uvicorn", "--factory", "api.main:create_app", "--port", str(api_port)],
        "daemon": [str(BIN / "dagster-daemon"), "run", "-m", "image_pipeline.definitions"],
        **(extra or {}),
    }
    if webserver:
        module = "image_pipeline.definitions"
        commands["webserver"] = [str(BIN / "dagster-webserver"), "-m", module, "-p", str(ui_port)]
    procs = []
    try:
        for name, cmd in commands.items():
            # own group: children (celery's pool, the daemon's code server) are stopped too
            procs.append(spawn(cmd, env=full_env, cwd=cwd, output=logs / f"{name}.log"))
        stack = Stack(f"http://127.0.0.1:{api_port}", full_env, logs, ui)
        deadline = time.monotonic() + 90
        probes = [(f"{stack.api}/api/check_db_connection", "api")] + (
            [(f"{ui}/server_info", "webserver")] if ui else []
        )
        for url, name in probes:
            wait_http(url, max(0.0, deadline - time.monotonic()), detail=lambda name=name: stack.log_tail(name))
        yield stack
    finally:
        stop(procs, grace=20)
        drop_pg_database(dagster_pg)
        drop_pg_database(app_pg)
