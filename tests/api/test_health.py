import time

from fastapi.testclient import TestClient

from api.main import create_app
from tests.support.servers import free_port


def test_db_connected(client) -> None:
    for path in ("/api/check_db_connection", "/api/check_db_connection/"):
        r = client.get(path)
        assert r.status_code == 200 and r.json() == {"db_status": "connected"}


def test_db_down_is_503_not_500_or_hang(make_settings) -> None:
    """Issue 15 item 8: the answer (no auth) names no driver, host, port or user. Fails before the fix:
    the detail was the driver's exception text (`OperationalError: ... 127.0.0.1 ... port ...`)."""
    port = free_port()
    dead = f"postgresql+psycopg2://postgres@127.0.0.1:{port}/nothing"
    app = create_app(make_settings(database_url=dead), migrate=False)
    with TestClient(app) as c:
        start = time.monotonic()
        r = c.get("/api/check_db_connection")
        assert r.status_code == 503
        assert r.json() == {"db_status": "unavailable", "detail": "the database did not answer"}
        for leak in ("127.0.0.1", str(port), "postgres", "psycopg", "Error", "nothing"):
            assert leak not in r.text, leak
        assert time.monotonic() - start < 30  # bounded, not a hang (generous: not a timing claim)


def closed_port_url(scheme: str) -> str:
    """An address on loopback where nothing listens (bound once to pick it, then released)."""
    return f"{scheme}://127.0.0.1:{free_port()}"


def test_healthz_is_up(client) -> None:
    for path in ("/healthz", "/healthz/"):
        r = client.get(path)
        assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_readyz_with_every_dependency_up(make_settings, bucket) -> None:
    """PostgreSQL, Redis and the suite's S3 server (Swift s3api) all answer: 200, each check ok."""
    with TestClient(create_app(make_settings(s3_bucket=bucket))) as c:
        for path in ("/readyz", "/readyz/"):
            r = c.get(path)
            assert r.status_code == 200, r.text
            assert r.json() == {
                "status": "ready",
                "failed": [],
                "checks": {
                    "database": {"status": "ok", "detail": None},
                    "objects": {"status": "ok", "detail": None},
                    "redis": {"status": "ok", "detail": None},
                },
            }


def test_readyz_names_an_object_store_that_is_down(make_settings) -> None:
    """An S3 endpoint on a closed port: 503 naming `objects`, the others still ok, and the answer (no auth)
    names no host or port. Liveness stays 200: a store outage must not get the API restarted."""
    endpoint = closed_port_url("https")
    app = create_app(make_settings(s3_bucket="imgpipe", s3_endpoint_url=endpoint))
    with TestClient(app) as c:
        r = c.get("/readyz")
        assert r.status_code == 503
        body = r.json()
        assert body["status"] == "unavailable" and body["failed"] == ["objects"]
        assert body["checks"]["objects"] == {"status": "unavailable", "detail": "did not answer"}
        assert body["checks"]["database"]["status"] == body["checks"]["redis"]["status"] == "ok"
        assert endpoint.rsplit(":", 1)[1] not in r.text and "127.0.0.1" not in r.text
        assert c.get("/healthz").status_code == 200


def test_readyz_names_a_missing_bucket(make_settings, s3_endpoint) -> None:
    """The store answers but the bucket is not there: not ready either (every upload would fail)."""
    with TestClient(create_app(make_settings(s3_bucket="imgpipe-no-such-bucket"))) as c:
        r = c.get("/readyz")
        assert r.status_code == 503 and r.json()["failed"] == ["objects"]


def test_readyz_names_redis_and_the_database_when_they_are_down(make_settings) -> None:
    dead_db = f"postgresql+psycopg2://postgres@127.0.0.1:{free_port()}/nothing"
    settings = make_settings(database_url=dead_db, redis_url=closed_port_url("redis") + "/0")
    with TestClient(create_app(settings, migrate=False)) as c:
        r = c.get("/readyz")
        assert r.status_code == 503
        assert r.json()["failed"] == ["database", "redis"]
        assert r.json()["checks"]["objects"]["status"] == "ok"  # the local objects directory
        assert c.get("/healthz").json() == {"status": "ok"}


def test_readyz_checks_redis_only_when_configured(make_settings) -> None:
    with TestClient(create_app(make_settings(redis_url=None))) as c:
        r = c.get("/readyz")
        assert r.status_code == 200 and set(r.json()["checks"]) == {"database", "objects"}
