"""docker-compose.yml. Issue 15 items 3 and 4: it publishes nothing unauthenticated and holds no secret.
Issue 17: it runs as written: every image pinned by version, one `migrate` one-shot that every service of
ours waits for (`service_completed_successfully`) and that our CLI accepts, no replica that migrates on
its own, the API image without the executors, and health checks on routes the API has.

Before the fix the Dagster webserver (no authentication; GraphQL can launch any job) and the MinIO
console were published on every interface, and the file carried default credentials (`change-me`
key, a `whsec_` default, `imgpipe:imgpipe`, `minio-secret`). The file is read as compose reads it
(YAML anchors merged, `${VAR:-default}` / `${VAR:?error}` interpolated with nothing set).
"""

from __future__ import annotations

import re

import pytest
import yaml

from api.main import create_app
from image_pipeline.cli import build_parser
from tests.support.paths import ROOT

COMPOSE = ROOT / "docker-compose.yml"
VAR = re.compile(r"\$\{(\w+)(?::?([-?])([^}]*))?\}")
SECRET_NAMES = re.compile(r"SECRET|PASSWORD|API_KEYS|ACCESS_KEY", re.I)


def defaults(value: str) -> str:
    """`value` as compose renders it with no variable set: `:-` defaults filled in, `:?` left empty
    (compose refuses to start there), a plain `${VAR}` empty."""
    return VAR.sub(lambda m: m.group(3) if m.group(2) == "-" else "", value)


def services() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def test_only_the_api_is_published_beyond_loopback() -> None:
    """Fails before the fix ("3000:3000", "9000:9000", "9001:9001" bound every interface); passes after."""
    published = {}
    for name, svc in services().items():
        for port in svc.get("ports", []):
            parts = defaults(str(port)).split(":")
            published[(name, parts[-1])] = parts[0] if len(parts) == 3 else "0.0.0.0"
    assert published.pop(("api", "8000")) == "0.0.0.0"  # the API authenticates every route that needs it
    assert published and all(host == "127.0.0.1" for host in published.values()), published


def test_no_secret_or_key_has_a_default() -> None:
    """Fails before the fix (IMGPIPE_API_KEYS defaulted to change-me, IMGPIPE_WEBHOOK_SECRET to a whsec_
    value, PostgreSQL and MinIO had fixed passwords); passes after."""
    found = []
    for name, svc in services().items():
        env = svc.get("environment") or {}
        for key, value in env.items() if isinstance(env, dict) else (e.split("=", 1) for e in env):
            rendered = defaults(str(value))
            if SECRET_NAMES.search(key) and rendered:
                found.append((name, key, rendered))
            if re.search(r"://[^/:@]+:[^@]+@", rendered):  # a URL with a password in it
                found.append((name, key, rendered))
    assert found == []
    text = COMPOSE.read_text()
    for literal in ("change-me", "minio-secret", "imgpipe:imgpipe@", "guest:guest@"):
        assert literal not in text
    assert not re.search(r"whsec_[A-Za-z0-9+/=]{8,}", text)


SERVICES: dict[str, dict] = yaml.safe_load(COMPOSE.read_text())["services"]  # anchors and merge keys resolved
OURS = {name: svc for name, svc in SERVICES.items() if "build" in svc}  # built from ./Dockerfile
# A release version: 15.19, 7.4.11-bookworm, v1.7.0 (not latest, not a bare major such as postgres:15).
PINNED = re.compile(r"^v?\d+\.\d+(\.\d+)?([-.][A-Za-z0-9.]+)?$")


def lock_of(svc: dict) -> str:
    build = svc["build"]
    return "requirements.lock" if isinstance(build, str) else build.get("args", {}).get("LOCK", "requirements.lock")


def test_every_image_is_pinned_by_version() -> None:
    for name, svc in SERVICES.items():
        if name in OURS:
            assert svc["image"].startswith("image-pipeline:"), name
            continue
        image, _, tag = svc["image"].rpartition(":")
        assert image and "/" not in tag and PINNED.match(tag), f"{name}: {svc['image']} is not pinned by version"


def test_the_object_store_is_the_maintained_gateway_and_the_app_points_at_it() -> None:
    s3 = SERVICES["s3"]
    assert s3["image"].startswith("ghcr.io/versity/versitygw:v")
    assert "minio" not in (ROOT / "docker-compose.yml").read_text().lower()
    port = s3["environment"]["VGW_PORT"].lstrip(":")
    health = s3["environment"]["VGW_HEALTH"]
    assert f"http://127.0.0.1:{port}{health}" in s3["healthcheck"]["test"]
    for name, svc in OURS.items():
        assert svc["environment"]["IMGPIPE_S3_ENDPOINT_URL"] == f"http://s3:{port}", name


def test_migrate_runs_once_and_everything_of_ours_waits_for_it() -> None:
    migrate = SERVICES["migrate"]
    assert migrate["restart"] == "no"
    args = build_parser().parse_args(migrate["command"][1:])  # our CLI accepts the command as written
    assert migrate["command"][0] == "imgpipe" and args.func.__name__ == "_migrate"
    assert args.dagster and args.create_bucket and args.reset_metrics
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert migrate["depends_on"]["s3"]["condition"] == "service_healthy"
    for name, svc in OURS.items():
        assert svc["environment"]["IMGPIPE_MIGRATE_ON_START"] == "false", name
        if name != "migrate":
            assert svc["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}, name


def test_every_process_of_ours_shares_one_metrics_directory() -> None:
    """The API's /metrics adds up the files every process writes (prometheus_client multiprocess mode):
    without one shared directory it showed the API's own counters only, never a run's."""
    for name, svc in OURS.items():
        where = svc["environment"]["PROMETHEUS_MULTIPROC_DIR"]
        assert f"metrics:{where}" in svc["volumes"], name
    assert "metrics" in yaml.safe_load(COMPOSE.read_text())["volumes"]


def test_the_api_image_carries_no_executor_and_the_workers_carry_theirs() -> None:
    assert lock_of(SERVICES["api"]) == "requirements.lock"
    for name, svc in OURS.items():
        assert (ROOT / lock_of(svc)).is_file(), name
        lock = (ROOT / lock_of(svc)).read_text()
        if "dagster-celery" in svc.get("command", []) or name == "code-location":  # runs run the executor
            assert "\ndagster-celery==" in lock, name
        images = {s["image"] for s in OURS.values() if lock_of(s) == lock_of(svc)}
        assert images == {svc["image"]}, f"{name}: one image tag per lock"


@pytest.mark.parametrize("service, path", [("api", "/readyz")])
def test_health_checks_ask_routes_the_api_has(service: str, path: str) -> None:
    assert path in create_app().openapi()["paths"]
    assert f"http://127.0.0.1:8000{path}" in " ".join(SERVICES[service]["healthcheck"]["test"])
