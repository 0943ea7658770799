"""Access: hashed keys from the CLI, tenant isolation, per-key upload rate limit, headers and CORS."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from api.auth import owner_of
from api.main import create_app
from tests.support.api import AUTH, GOOD, OTHER, new_db_key


def imgpipe(settings, *args: str, cwd) -> subprocess.CompletedProcess:
    """Run the real `imgpipe` command line against the test database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMGPIPE_")}
    env["IMGPIPE_DATABASE_URL"] = settings.resolved_database_url
    return subprocess.run(
        [str(Path(sys.executable).parent / "imgpipe"), *args], cwd=cwd, env=env, capture_output=True, text=True
    )


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def upload(client, headers) -> int:
    return client.post("/api/upload", headers=headers, files={"file": ("p.csv", GOOD, "text/csv")}).status_code


def test_cli_key_lifecycle_hashed_isolated_and_revocable(client, settings, tmp_path) -> None:
    created = imgpipe(settings, "keys", "create", "shop frontend", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("imgp_") and len(key) > 40 and "only time" in created.stderr

    # Only the hash is stored: the key appears nowhere in the table.
    engine = create_engine(settings.resolved_database_url)
    with engine.connect() as c:
        rows = [tuple(map(str, r)) for r in c.execute(text("SELECT * FROM api_keys"))]
    engine.dispose()
    assert rows and not any(key in cell for row in rows for cell in row)
    [key_id] = [row[0] for row in rows if "shop frontend" in row]

    r = client.post("/api/upload", headers=bearer(key), files={"file": ("p.csv", GOOD)})
    assert r.status_code == 202, r.text
    rid = r.json()["request_id"]
    assert client.get(f"/api/status/{rid}", headers=bearer(key)).status_code == 200
    # Another tenant (an env key) sees nothing of it, and the DB key sees nothing of the env key's requests.
    assert client.get(f"/api/status/{rid}", headers=AUTH).status_code == 404
    assert client.get(f"/api/requests/{rid}/output.csv", headers=AUTH).status_code == 404
    other = client.post("/api/upload", headers=AUTH, files={"file": ("p.csv", GOOD)}).json()["request_id"]
    assert client.get(f"/api/status/{other}", headers=bearer(key)).status_code == 404

    revoked = imgpipe(settings, "keys", "revoke", key_id, cwd=tmp_path)
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    r = client.get(f"/api/status/{rid}", headers=bearer(key))
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert imgpipe(settings, "keys", "revoke", "999999", cwd=tmp_path).returncode == 1
    listed = imgpipe(settings, "keys", "list", cwd=tmp_path)
    assert listed.returncode == 0 and key not in listed.stdout and key[:12] in listed.stdout  # prefix only
    [line] = [ln for ln in listed.stdout.splitlines() if "shop frontend" in ln]
    assert line.split()[0] == key_id and line.split()[4] != "-"  # the revoked column is filled in


def test_env_key_owner_ids_are_stable() -> None:
    # The tenant id of an env key must not change between releases, or its requests would vanish.
    assert owner_of("test-key-1") == "key_1255558df586ae279007fffa"


@pytest.mark.parametrize(
    "header",
    [
        {},
        {"Authorization": "test-key-1"},
        {"Authorization": "Basic dGVzdC1rZXktMTo="},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer test-key-1x"},
        {"Authorization": "Bearer " + "k" * 5000},
    ],
)
def test_bad_credentials_are_401(client, header) -> None:
    r = client.get("/api/status/00000000-0000-0000-0000-000000000000", headers=header)
    assert r.status_code == 401 and r.headers["content-type"] == "application/json"


@pytest.mark.parametrize("with_redis", [True, False], ids=["redis", "memory"])
def test_upload_rate_limit_per_key_is_429_with_retry_after(make_settings, bucket, with_redis: bool) -> None:
    overrides = {} if with_redis else {"redis_url": None}
    settings = make_settings(s3_bucket=bucket, upload_rate_limit="2/minute", **overrides)
    with TestClient(create_app(settings)) as c:
        first, second = new_db_key(settings, "a"), new_db_key(settings, "b")
        assert [upload(c, bearer(first)) for _ in range(2)] == [202, 202]
        r = c.post("/api/upload", headers=bearer(first), files={"file": ("p.csv", GOOD)})
        assert r.status_code == 429
        assert 1 <= int(r.headers["retry-after"]) <= 60
        assert "2/minute" in r.json()["detail"]
        assert upload(c, bearer(second)) == 202  # per key: another tenant is not affected
        assert c.get("/api/check_db_connection").status_code == 200  # only uploads are limited


def test_rate_limit_is_shared_through_redis(make_settings, bucket) -> None:
    """Two API processes (here: two apps) count one key together when Redis is configured."""
    settings = make_settings(s3_bucket=bucket, upload_rate_limit="3/minute")
    key = new_db_key(settings)
    with TestClient(create_app(settings)) as a, TestClient(create_app(settings)) as b:
        codes = [upload(app, bearer(key)) for app in (a, b, a, b)]
    assert codes == [202, 202, 202, 429]


def test_rate_limit_fails_open_when_redis_is_down(make_settings, bucket) -> None:
    settings = make_settings(s3_bucket=bucket, upload_rate_limit="1/minute", redis_url="redis://127.0.0.1:1/0")
    with TestClient(create_app(settings)) as c:
        assert [upload(c, AUTH) for _ in range(2)] == [202, 202]


EXPECTED_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


def test_security_headers_on_every_answer(make_settings, bucket) -> None:
    settings = make_settings(s3_bucket=bucket, max_upload_bytes=1000)
    with TestClient(create_app(settings)) as c:
        answers = [
            c.get("/api/check_db_connection"),
            c.get("/api/status/nope", headers=AUTH),
            c.get("/api/status/nope"),
            c.post("/api/upload", headers=AUTH, files={"file": ("p.csv", b"x" * 200_000)}),
            c.get("/files/requests/nope.jpg"),
            c.get("/no/such/path"),
            c.get("/openapi.json"),
        ]
        assert [r.status_code for r in answers] == [200, 404, 401, 413, 404, 404, 200]
        for r in answers:
            for name, value in EXPECTED_HEADERS.items():
                assert r.headers.get(name) == value, (r.request.url, name)
            csp = r.headers["content-security-policy"]
            assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
            assert "strict-transport-security" not in r.headers  # plain http: HSTS would be ignored anyway
        assert answers[1].headers["cache-control"] == "no-store"
        docs = c.get("/docs")
        assert docs.status_code == 200 and "cdn.jsdelivr.net" in docs.headers["content-security-policy"]
    with TestClient(create_app(settings), base_url="https://testserver") as c:
        assert c.get("/api/check_db_connection").headers["strict-transport-security"].startswith("max-age=")


def test_cors_is_off_by_default(client) -> None:
    pre = client.options(
        "/api/upload",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in pre.headers
    r = client.get("/api/check_db_connection", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers


def test_cors_allows_only_configured_origins(make_settings, bucket) -> None:
    settings = make_settings(s3_bucket=bucket, cors_origins="https://shop.example, https://admin.example/")
    with TestClient(create_app(settings)) as c:
        ok = c.options(
            "/api/upload",
            headers={
                "Origin": "https://admin.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "https://admin.example"
        assert "access-control-allow-credentials" not in ok.headers
        bad = c.options(
            "/api/upload", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
        )
        assert "access-control-allow-origin" not in bad.headers
        r = c.get("/api/status/x", headers={**OTHER, "Origin": "https://shop.example"})
        assert r.status_code == 404 and r.headers["access-control-allow-origin"] == "https://shop.example"
        assert r.headers["x-content-type-options"] == "nosniff"


def test_product_names_are_never_served_as_html(client) -> None:
    """Names and cells are data: echoed only inside JSON (nosniff), never in an HTML page."""
    evil = "<script>alert(1)</script>"
    csv = f"S.No.,Product Name,Input Image Urls\n1,{evil},javascript:alert(1)\n2,<img src=x onerror=alert(1)>,\n"
    r = client.post("/api/upload", headers=AUTH, files={"file": ("<b>x</b>.csv", csv.encode())})
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/json" and r.headers["x-content-type-options"] == "nosniff"
    assert "javascript:alert(1)" in r.text  # reported as data, inside JSON strings
    for path in (f"/api/status/{evil}", "/api/<svg onload=alert(1)>", f"/files/{evil}"):
        r = client.get(path, headers=AUTH)
        assert r.status_code == 404 and r.headers["content-type"] == "application/json", path


def test_a_revoked_database_key_is_refused_even_while_listed_in_the_env(make_settings, bucket) -> None:
    """Issue 15 item 8. Fails before the fix: the env list was checked first and answered before the
    database was asked, so a key revoked with `imgpipe keys revoke` kept working from IMGPIPE_API_KEYS."""
    from sqlalchemy import select

    from image_pipeline.domain.db.api_keys import revoke_key
    from image_pipeline.domain.db.engine import make_engine, session_factory
    from image_pipeline.domain.db.models import ApiKey

    first = make_settings(s3_bucket=bucket)
    key = new_db_key(first, "moved to env")
    settings = make_settings(s3_bucket=bucket, api_keys=f"test-key-1,{key}")
    with TestClient(create_app(settings)) as c:
        assert upload(c, bearer(key)) == 202
        engine = make_engine(settings.resolved_database_url)
        with session_factory(engine)() as s:
            row = s.scalars(select(ApiKey).where(ApiKey.prefix == key[:12])).one()
            revoke_key(s, row.id)
        engine.dispose()
        r = c.get("/api/requests", headers=bearer(key))
        assert r.status_code == 401 and r.json()["detail"] == "invalid API key"
        assert upload(c, bearer(key)) == 401
        assert c.get("/api/requests", headers=AUTH).status_code == 200  # other env keys are untouched


def test_webhook_replay_is_rate_limited_per_key(make_settings, bucket) -> None:
    """Issue 15 item 8. Fails before the fix: only uploads were limited, so a key could replay a final
    event without end, each replay a POST the service sends to the webhook URL (an amplifier)."""
    settings = make_settings(s3_bucket=bucket, replay_rate_limit="2/minute")
    with TestClient(create_app(settings)) as c:
        me, them = bearer(new_db_key(settings, "me")), bearer(new_db_key(settings, "them"))  # fresh counts in Redis
        mine = c.post("/api/upload", headers=me, files={"file": ("p.csv", GOOD)}).json()["request_id"]
        theirs = c.post("/api/upload", headers=them, files={"file": ("p.csv", GOOD)}).json()["request_id"]
        codes = [c.post(f"/api/requests/{mine}/webhooks/replay", headers=me).status_code for _ in range(3)]
        assert codes == [409, 409, 429]  # 409: not finished yet; the third is over the limit
        r = c.post(f"/api/requests/{mine}/webhooks/replay", headers=me)
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert r.json()["errors"][0]["message"].endswith("(IMGPIPE_REPLAY_RATE_LIMIT)")
        assert c.post(f"/api/requests/{theirs}/webhooks/replay", headers=them).status_code == 409  # per key


def test_env_keys_have_a_minimum_length(make_settings, bucket) -> None:
    """Issue 15 item 8. Fails before the fix: any key, `x` or `change-me`, was accepted in
    IMGPIPE_API_KEYS; now start-up refuses it (without echoing it) and short bearer keys get a 401."""
    from pydantic import ValidationError

    from image_pipeline.domain.settings import Settings

    for short in ("x", "change-me", "k" * 15):
        with pytest.raises(ValidationError) as refused:
            Settings(_env_file=None, api_keys=f"{'a' * 40},{short}")
        # Refused as too short, or (change-me) as a placeholder: either way the entry is named, not echoed.
        message = str(refused.value)
        assert ("entry 2 has" in message and "at least 16" in message) or "entry 2 looks like a placeholder" in message
        assert short not in str(refused.value) and "a" * 40 not in str(refused.value)  # no key is echoed
    long_key = "k" * 32
    settings = make_settings(s3_bucket=bucket, api_keys=long_key, api_key_min_chars=32)
    with TestClient(create_app(settings)) as c:
        assert upload(c, bearer(long_key)) == 202
        assert c.get("/api/requests", headers=bearer("k" * 31)).status_code == 401
