"""Property test: no generated request makes the API answer 5xx (or crash), and every /api answer is JSON.

Routes come from the app's own OpenAPI schema, so a new endpoint is fuzzed without editing this file.
Bounded (a few hundred examples in all) so it runs in well under a minute.
"""

from __future__ import annotations

import re
import string

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.main import create_app
from tests.support.api import AUTH

FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    derandomize=True,
    database=None,
)

auth_headers = st.one_of(
    st.just(AUTH),  # mostly the right key, so requests get past authentication
    st.just(AUTH),
    st.just(AUTH),
    st.just({}),
    st.builds(lambda t: {"Authorization": t}, st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80)),
)
path_value = st.one_of(
    st.text(max_size=60),
    st.uuids().map(str),
    st.sampled_from(["..", "../../etc/passwd", "%00", "%2e%2e%2f", "requests/x/images/0000001.jpg", "<script>"]),
)
cell = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        ["=1+1", "@SUM(A1)", '"', '""', ",", "\n", "\r\n", "\t", "\x00", "\ufeff", "https://x.example/a.jpg"]
    ),
    st.builds(lambda h, p: f"https://{h}.example/{p}.jpg", st.from_regex(r"[a-z]{1,10}", fullmatch=True), st.text()),
)
csv_text = st.builds(
    lambda header, rows: "\n".join([header] + [",".join(r) for r in rows]),
    st.sampled_from(["S.No.,Product Name,Input Image Urls", "S.No.,Product Name", "", "a,b,c,d"]),
    st.lists(st.lists(cell, max_size=5), max_size=8),
)


def _valid_csv(names: list[str], urls: list[list[str]]) -> bytes:
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["S.No.", "Product Name", "Input Image Urls"])
    for i, (name, row_urls) in enumerate(zip(names, urls, strict=False), 1):
        writer.writerow([i, name, ", ".join(row_urls)])
    return buf.getvalue().encode()


name = st.text(st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=40).filter(str.strip)
url = st.builds(
    lambda h, p: f"https://{h}.example/{p}.jpg", st.from_regex(r"[a-z]{1,10}", fullmatch=True), st.integers()
)
valid_csv = st.builds(
    _valid_csv, st.lists(name, min_size=1, max_size=5), st.lists(st.lists(url, min_size=1, max_size=3), min_size=5)
)
file_body = st.one_of(
    valid_csv, valid_csv, csv_text.map(str.encode), st.binary(max_size=300), csv_text.map(lambda t: t.encode("utf-16"))
)
webhook = st.one_of(
    st.none(),
    st.none(),
    st.none(),
    st.text(max_size=60),
    st.sampled_from(
        [
            "http://127.0.0.1:1/h",
            "https://[::1]/h",
            "https://2130706433/h",
            "javascript:alert(1)",
            "https://user:pw@x.invalid/h",
            "https://x.invalid:99999/h",
            "http://[::ffff:a9fe:a9fe]/",
            "https://%zz/",
            "https://[/",
        ]
    ),
)


def routes(app) -> list[tuple[str, str]]:
    schema = app.openapi()
    return sorted((method.upper(), path) for path, item in schema["paths"].items() for method in item)


def fill(path: str, value: str) -> str:
    from urllib.parse import quote

    return re.sub(r"\{[^}]+\}", quote(value, safe="/") or "x", path)


def check(response, path: str) -> None:
    assert response.status_code < 500, (path, response.status_code, response.text[:300])
    if path.startswith("/api/") and not response.headers.get("content-type", "").startswith("text/csv"):
        assert response.headers["content-type"].startswith("application/json"), (path, response.headers)
    assert response.headers["x-content-type-options"] == "nosniff"


def test_no_generated_request_is_answered_with_5xx(make_settings, bucket) -> None:
    app = create_app(make_settings(s3_bucket=bucket, max_upload_bytes=20_000))
    with TestClient(app) as client:
        documented = routes(app)
        assert ("POST", "/api/upload") in documented and ("GET", "/api/status/{request_id}") in documented

        @FUZZ
        @given(
            route=st.sampled_from(documented),
            value=path_value,
            headers=auth_headers,
            query=st.dictionaries(st.text(string.ascii_letters, min_size=1, max_size=8), st.text(max_size=20)),
        )
        def any_route(route: tuple[str, str], value: str, headers: dict, query: dict) -> None:
            method, template = route
            path = fill(template, value)
            check(client.request(method, path, headers=headers, params=query), path)

        @FUZZ
        @given(
            body=file_body,
            filename=st.text(max_size=40),
            ctype=st.sampled_from(["text/csv", "application/octet-stream", "image/png", ""]),
            hook=webhook,
            headers=auth_headers,
        )
        def uploads(body: bytes, filename: str, ctype: str, hook: str | None, headers: dict) -> None:
            data = {} if hook is None else {"webhook_url": hook}
            r = client.post("/api/upload", headers=headers, files={"file": (filename, body, ctype)}, data=data)
            check(r, "/api/upload")
            if r.status_code == 202:
                rid = r.json()["request_id"]
                check(client.get(f"/api/status/{rid}", headers=headers), "/api/status")

        @FUZZ
        @given(
            body=st.binary(max_size=500),
            ctype=st.sampled_from(
                [
                    "multipart/form-data",
                    "multipart/form-data; boundary=x",
                    "multipart/form-data; boundary=",
                    "application/json",
                    "application/x-www-form-urlencoded",
                    "text/plain",
                ]
            ),
        )
        def raw_upload_bodies(body: bytes, ctype: str) -> None:
            r = client.post("/api/upload", headers={**AUTH, "Content-Type": ctype}, content=body)
            check(r, "/api/upload")

        any_route()
        uploads()
        raw_upload_bodies()
