from image_pipeline.domain.keys import input_key
from image_pipeline.domain.services import make_store
from tests.support.api import AUTH, GOOD, count_requests


def test_upload_accepted_stores_csv_and_records_request(client, settings) -> None:
    r = client.post("/api/upload", headers=AUTH, files={"file": ("p.csv", GOOD, "text/csv")})
    assert r.status_code == 202, r.text
    body = r.json()
    rid = body["request_id"]
    assert body["status_url"].endswith(f"/api/status/{rid}") and "3 images" in body["message"]
    assert make_store(settings).get(input_key(rid)) == GOOD
    status = client.get(f"/api/status/{rid}", headers=AUTH).json()
    assert status["status"] == "pending" and status["progress"] == {"total": 3, "done": 0, "failed": 0}


def test_refused_csv_lists_every_problem_and_stores_nothing(client, settings) -> None:
    before = count_requests(settings)
    bad = b"S.No.,Product Name,Input Image Urls\n1,A,https://x.example/a.jpg\n1,,not-a-url\n"
    r = client.post("/api/upload", headers=AUTH, files={"file": ("p.csv", bad, "text/csv")})
    assert r.status_code == 422
    body = r.json()
    assert body["detail"].startswith("CSV refused")
    assert {(e["row"], e["column"]) for e in body["errors"]} == {
        (3, "S.No."),
        (3, "Product Name"),
        (3, "Input Image Urls"),
    }
    assert count_requests(settings) == before


def test_status_codes_for_other_refusals(client) -> None:
    r = client.post("/api/upload", headers=AUTH, files={"file": ("p.csv", b"\x00\x01\x02binary", "text/csv")})
    assert r.status_code == 415 and r.json()["errors"][0]["row"] == 0
    r = client.post(
        "/api/upload",
        headers=AUTH,
        files={
            "file": ("p.csv", "S.No.,Product Name,Input Image Urls\n1,Café,https://x.example/a.jpg\n".encode("latin-1"))
        },
    )
    assert r.status_code == 400 and "UTF-8" in r.json()["errors"][0]["message"]
    r = client.post("/api/upload", headers=AUTH, data={"webhook_url": "https://x.example/h"})
    assert r.status_code == 422 and r.json()["errors"][0]["column"] == "file"


def test_upload_too_large_is_413(make_settings, bucket) -> None:
    from fastapi.testclient import TestClient

    from api.main import create_app

    with TestClient(create_app(make_settings(s3_bucket=bucket, max_upload_bytes=2000))) as c:
        big = GOOD + b"".join(b"%d,P,https://x.example/%d.jpg\n" % (i, i) for i in range(3, 200))
        r = c.post("/api/upload", headers=AUTH, files={"file": ("p.csv", big, "text/csv")})
        assert r.status_code == 413 and "larger than" in r.json()["detail"]
        huge = b"x" * 500_000
        r = c.post("/api/upload", headers=AUTH, files={"file": ("p.csv", huge, "text/csv")})
        assert r.status_code == 413


def test_auth_required(client) -> None:
    assert client.post("/api/upload", files={"file": ("p.csv", GOOD)}).status_code == 401
    r = client.post("/api/upload", headers={"Authorization": "Bearer nope"}, files={"file": ("p.csv", GOOD)})
    assert r.status_code == 401 and r.json()["detail"] == "invalid API key"


def test_webhook_url_is_checked_at_upload(client, webhook_receiver) -> None:
    for url, reason in (
        ("http://127.0.0.1:9/hook", "refused"),
        ("ftp://x.example/h", "http"),
        ("http://169.254.169.254/latest", "refused"),
        ("https://[::ffff:127.0.0.1]/hook", "refused"),
        ("https://2130706433/hook", "refused"),
        ("https://100.64.0.1/hook", "refused"),
        ("https://[64:ff9b::a9fe:a9fe]/hook", "refused"),
        ("http://93.184.216.34/hook", "must use https"),  # public, but plain http
        ("https://user:pw@93.184.216.34/hook", "credentials"),
        ("https://93.184.216.34:8443/hook", "port 8443 is not allowed"),
    ):
        r = client.post("/api/upload", headers=AUTH, files={"file": ("p.csv", GOOD)}, data={"webhook_url": url})
        assert r.status_code == 422, url
        assert r.json()["errors"][0]["column"] == "webhook_url" and reason in r.json()["errors"][0]["message"]
    r = client.post(
        "/api/upload", headers=AUTH, files={"file": ("p.csv", GOOD)}, data={"webhook_url": webhook_receiver.url}
    )
    assert r.status_code == 202  # allowed by IMGPIPE_FETCH_ALLOW despite http + loopback


def test_peer_fixtures_through_the_endpoint(client) -> None:
    from tests.support.inputs import ACCEPTED, PEERS, REFUSED

    for name in ACCEPTED:
        r = client.post("/api/upload", headers=AUTH, files={"file": (name, (PEERS / name).read_bytes())})
        assert r.status_code == 202, (name, r.text)
    for name, message in REFUSED.items():
        r = client.post("/api/upload", headers=AUTH, files={"file": (name, (PEERS / name).read_bytes())})
        assert r.status_code == 422 and message in r.json()["errors"][0]["message"], (name, r.text)


def test_space_after_delimiter_before_a_quoted_cell_through_the_endpoint(client, settings) -> None:
    """Issue 15 item 14; fails before the fix (422 "not an absolute http(s) URL"): one product, two URLs."""
    from image_pipeline.domain.db.engine import make_engine, session_factory
    from image_pipeline.domain.db.requests import get_request

    body = b'S.No.,Product Name,Input Image Urls\n1, SKU1, "https://a.example/1.jpg,https://a.example/2.jpg"\n'
    r = client.post("/api/upload", headers=AUTH, files={"file": ("p.csv", body)})
    assert r.status_code == 202, r.text
    engine = make_engine(settings.resolved_database_url)
    with session_factory(engine)() as s:
        req = get_request(s, r.json()["request_id"])
        assert (req.row_count, req.url_count) == (1, 2)
    engine.dispose()


def test_refusals_name_no_internal_address(make_settings, bucket) -> None:
    """Issue 15 item 8. Fails before the fix: "refused: localhost resolves to a loopback address
    127.0.0.1" told any caller the internal address of a name (a DNS oracle for postgres, redis...)."""
    from fastapi.testclient import TestClient

    from api.main import create_app

    with TestClient(create_app(make_settings(s3_bucket=bucket))) as c:
        r = c.post(
            "/api/upload", headers=AUTH, files={"file": ("p.csv", GOOD)}, data={"webhook_url": "https://localhost/h"}
        )
        assert r.status_code == 422, r.text
        # A single-label name is refused without asking DNS (nothing learnt about internal names).
        assert r.json()["errors"][0]["message"] == "refused: 'localhost' is not a public host name (single label)"
        assert "127." not in r.text and "::1" not in r.text
