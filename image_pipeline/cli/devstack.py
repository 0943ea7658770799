"""`make up`: the whole service on embedded defaults, in the foreground, stopped cleanly by Ctrl-C/SIGTERM.

Starts the API (uvicorn), the Dagster webserver and the Dagster daemon with all state under
IMGPIPE_DATA_DIR (SQLite, local objects). Generates a dev API key and webhook secret on first use
(kept in the data dir). Works unattended (stdin closed), and leaves no process behind: children
share our process group and die with us (PR_SET_PDEATHSIG) even if we are killed.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from image_pipeline.cli.processes import answers, spawn
from image_pipeline.cli.processes import stop as stop_all
from image_pipeline.domain.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def _persisted(path: Path, make) -> str:
    if path.exists():
        return path.read_text().strip()
    value = make()
    path.write_text(value + "\n")
    path.chmod(0o600)
    return value


def _say(msg: str = "") -> None:
    sys.stdout.write(msg + "\n")
    sys.stdout.flush()


def main() -> int:
    settings = Settings()
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, IMGPIPE_DATA_DIR=str(data_dir), PYTHONUNBUFFERED="1")
    key = (
        settings.api_key_list[0]
        if settings.api_key_list
        else _persisted(data_dir / "dev-api-key", lambda: "dev-" + secrets.token_urlsafe(24))
    )
    env["IMGPIPE_API_KEYS"] = settings.api_keys or key
    env["IMGPIPE_WEBHOOK_SECRET"] = settings.webhook_secret or _persisted(
        data_dir / "webhook-secret", lambda: "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    )
    dagster_home = data_dir / "dagster"
    dagster_home.mkdir(exist_ok=True)
    shutil.copyfile(ROOT / "deploy" / "embedded" / "dagster.yaml", dagster_home / "dagster.yaml")
    env["DAGSTER_HOME"] = str(dagster_home)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(_metrics_dir(data_dir))

    from image_pipeline.dagster_plugins.prepare_storage import create_dagster_storage
    from image_pipeline.domain.db.engine import upgrade

    create_dagster_storage(dagster_home, env)

    upgrade(Settings(data_dir=data_dir, database_url=settings.database_url).resolved_database_url)
    env["IMGPIPE_MIGRATE_ON_START"] = "false"  # migrated just above, once: the API need not do it again

    bin_dir = Path(sys.executable).parent
    api = f"http://{settings.api_host}:{settings.api_port}"
    ui = f"http://127.0.0.1:{settings.ui_port}"
    # Fast path: the API launches each accepted upload's run through the webserver at once.
    env.setdefault("IMGPIPE_DAGSTER_URL", ui)
    module = "image_pipeline.definitions"
    commands = {
        "api": [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "api.main:create_app",
            "--host",
            settings.api_host,
            "--port",
            str(settings.api_port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        "dagster-daemon": [str(bin_dir / "dagster-daemon"), "run", "-m", module],
        "dagster-webserver": [
            str(bin_dir / "dagster-webserver"),
            "-m",
            module,
            "-h",
            "127.0.0.1",
            "-p",
            str(settings.ui_port),
        ],
    }
    procs: dict[str, subprocess.Popen] = {}
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, stop)
    try:
        # Dagster first, the API once the webserver answers: the API's fast path launches each
        # upload's run through the webserver, so the first upload should not find it still starting.
        for name in ("dagster-daemon", "dagster-webserver"):
            procs[name] = _start(commands[name], env)
        ui_ready = False
        ready = False
        while not stopping:
            for name, p in procs.items():
                if p.poll() is not None:
                    _say(f"imgpipe: {name} exited with code {p.returncode}; stopping")
                    return 1
            if not ui_ready:
                ui_ready = answers(f"{ui}/server_info", timeout=1)
                if ui_ready:
                    procs["api"] = _start(commands["api"], env)
            elif not ready:
                ready = answers(f"{api}/api/check_db_connection", timeout=1)
                if ready:
                    _banner(api, ui, key, data_dir)
            time.sleep(0.3)
        return 0
    finally:
        stop_all(procs.values(), grace=10.0)


def _metrics_dir(data_dir: Path) -> Path:
    """Where every process of the stack writes its metrics, which the API's /metrics adds up
    (docs/observability.md). Emptied at each start, as prometheus_client's multiprocess mode requires:
    files of processes gone since would otherwise keep adding old counts to the new ones."""
    from image_pipeline.domain.telemetry.metrics import reset_multiprocess_dir

    path = Path(os.environ.get("PROMETHEUS_MULTIPROC_DIR") or data_dir / "metrics").resolve()
    reset_multiprocess_dir(path)
    return path


def _start(cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
    """In our process group (a terminal's Ctrl-C reaches every child), dying with us."""
    return spawn(cmd, env=env, cwd=ROOT, new_group=False, die_with_parent=True)


def _banner(api: str, ui: str, key: str, data_dir: Path) -> None:
    _say("")
    _say("image-pipeline is up")
    _say(f"  Web page   {api}/")
    _say(f"  API        {api}   (OpenAPI docs: {api}/docs)")
    _say(f"  Metrics    {api}/metrics")
    _say(f"  Dagster UI {ui}")
    _say(f"  API key    {key}")
    _say(f"  data dir   {data_dir}")
    _say("Try it:")
    _say(f"  curl -H 'Authorization: Bearer {key}' -F file=@examples/products.csv {api}/api/upload")
    _say("Ctrl-C stops everything.")


if __name__ == "__main__":
    sys.exit(main())
