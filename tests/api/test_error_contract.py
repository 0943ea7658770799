"""Issue 15 item 2 (API side): a URL or host name no resolver can encode is a 422 naming its row and
column, never a 500; and every 500 the API can still give is JSON in the error shape, with the security
headers."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from tests.support.api import AUTH, GOOD, count_requests

HEADER = "S.No.,Product Name,Input Image Urls\n"
BAD_HOSTS = [
    "a..b.example.com",  # empty label
    "x" * 64 + ".example.com",  # a label over 63 characters
    ("y" * 60 + ".") * 5 + "example",  # a name over 253 characters
    "ü" * 70 + ".example",  # non-ASCII, too long once encoded
    "\u2603.example",  # not allowed by IDNA 2008
    ".example.com",  # a leading empty label
]


@pytest.mark.parametrize("host", BAD_HOSTS)
def test_unencodable_webhook_host_is_a_422(client, settings, host: str) -> None:
    """Fails before the fix: `https://a..b.example.com/h` raised UnicodeError in getaddrinfo's IDNA codec,
    a plain-text 500 without security headers."""
    before = count_requests(settings)
    r = client.post(
        "/api/upload", headers=AUTH, files={"file": ("p.csv", GOOD)}, data={"webhook_url": f"https://{host}/h"}
    )
    assert r.status_code == 422, r.text
    [err] = r.json()["errors"]
    assert err["column"] == "webhook_url" and err["row"] == 0 and "host name" in err["message"]
    assert count_requests(settings) == before


@pytest.mark.parametrize("host", BAD_HOSTS)
def test_unencodable_image_host_is_a_422_naming_row_and_column(client, host: str) -> None:
    """Fails before the fix: such image URLs were accepted at upload and failed later as an internal error."""
    body = HEADER + "1,A,https://ok.example/a.jpg\n" + f'2,B,"https://ok.example/b.jpg, https://{host}/c.jpg"\n'
    r = client.post("/api/upload", headers=AUTH, files={"file": ("p.csv", body.encode())})
    assert r.status_code == 422, r.text
    [err] = r.json()["errors"]
    assert (err["row"], err["column"]) == (3, "Input Image Urls") and "host name" in err["message"]


def test_non_ascii_hosts_are_accepted_and_the_webhook_is_kept_in_ascii(client, webhook_receiver, settings) -> None:
    """A valid IDN is data, not an error: the image URL is accepted as written; the webhook host is
    encoded (IDNA 2008 A-labels) before it is resolved and stored."""
    body = HEADER + "1,Bücher,https://bücher.example/a.jpg\n"
    r = client.post("/api/upload", headers=AUTH, files={"file": ("p.csv", body.encode())})
    assert r.status_code == 202, r.text
    r = client.post(
        "/api/upload",
        headers=AUTH,
        files={"file": ("p.csv", GOOD)},
        data={"webhook_url": "https://bücher.invalid/h"},
    )
    # Resolving the encoded name fails (.invalid never resolves): a clean refusal naming the A-label.
    assert r.status_code == 422 and "xn--bcher-kva.invalid" in r.json()["errors"][0]["message"], r.text


SECURITY_HEADERS = ("X-Content-Type-Options", "X-Frame-Options", "Content-Security-Policy", "Referrer-Policy")


def _assert_json_500(r) -> None:
    assert r.status_code == 500
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"detail": "internal error", "errors": []}
    for h in SECURITY_HEADERS:
        assert h in r.headers, h


def test_an_unhandled_error_in_a_route_is_json_with_security_headers(settings) -> None:
    """Fails before the fix: Starlette's outermost ServerErrorMiddleware answered `Internal Server Error`
    in plain text, outside the security-headers middleware."""
    app = create_app(settings)

    @app.get("/api/boom")
    def boom() -> None:
        raise RuntimeError("secret internals")

    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/api/boom")
    _assert_json_500(r)
    assert "secret" not in r.text


def test_an_unhandled_error_in_a_middleware_is_json_with_security_headers(settings, monkeypatch) -> None:
    """Fails before the fix (plain text, no headers): an error in the upload gate, before any route."""
    import api.middleware.upload_gate as gate

    def broken(request):
        raise UnicodeError("label empty or too long")

    monkeypatch.setattr(gate, "limit_uploads", broken)
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        r = c.post("/api/upload", headers=AUTH, files={"file": ("p.csv", GOOD)})
    _assert_json_500(r)
