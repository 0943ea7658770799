"""Issue 15 items 3 and 4: docker-compose.yml publishes nothing unauthenticated and holds no secret.

Before the fix the Dagster webserver (no authentication; GraphQL can launch any job) and the MinIO
console were published on every interface, and the file carried default credentials (`change-me`
key, a `whsec_` default, `imgpipe:imgpipe`, `minio-secret`). The file is read as compose reads it
(YAML anchors merged, `${VAR:-default}` / `${VAR:?error}` interpolated with nothing set).
"""

from __future__ import annotations

import re

import yaml

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
