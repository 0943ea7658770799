from fastapi.testclient import TestClient

from api.main import create_app
from tests.support.api import AUTH, GOOD, OTHER


def upload(client) -> str:
    r = client.post("/api/upload", headers=AUTH, files={"file": ("p.csv", GOOD)})
    assert r.status_code == 202
    return r.json()["request_id"]


def test_status_trailing_slash_and_unknown(client) -> None:
    rid = upload(client)
    a = client.get(f"/api/status/{rid}", headers=AUTH)
    b = client.get(f"/api/status/{rid}/", headers=AUTH)
    assert a.status_code == b.status_code == 200 and a.json()["request_id"] == b.json()["request_id"] == rid
    assert set(a.json()) >= {"request_id", "status", "progress", "created_at", "updated_at", "output_csv_url"}
    assert client.get("/api/status/00000000-0000-0000-0000-000000000000", headers=AUTH).status_code == 404


def test_another_key_cannot_see_a_request(client) -> None:
    rid = upload(client)
    assert client.get(f"/api/status/{rid}", headers=OTHER).status_code == 404
    assert client.get(f"/api/requests/{rid}/output.csv", headers=OTHER).status_code == 404


def test_output_not_ready_is_409(client) -> None:
    rid = upload(client)
    r = client.get(f"/api/requests/{rid}/output.csv", headers=AUTH)
    assert r.status_code == 409 and "pending" in r.json()["detail"]


def test_status_is_correct_without_redis(make_settings, bucket) -> None:
    """Redis unreachable: answers come from the database, quickly and correctly."""
    with TestClient(create_app(make_settings(s3_bucket=bucket, redis_url="redis://127.0.0.1:1/0"))) as c:
        rid = upload(c)
        r = c.get(f"/api/status/{rid}", headers=AUTH)
        assert r.status_code == 200 and r.json()["status"] == "pending"


def test_cache_flushed_falls_back_to_database(client, redis_url) -> None:
    import redis

    rid = upload(client)
    client.get(f"/api/status/{rid}", headers=AUTH)
    r = redis.Redis.from_url(redis_url)
    assert r.exists(f"imgpipe:status:{rid}")
    r.flushdb()
    assert client.get(f"/api/status/{rid}", headers=AUTH).json()["progress"]["total"] == 3
