"""CSV and upload attacks through the real endpoint: each gets a clear answer, nothing is stored when refused."""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from image_pipeline.domain.settings import Settings
from tests.support.api import AUTH, count_requests
from tests.support.servers import free_port

HEADER = "S.No.,Product Name,Input Image Urls\n"
LONG_NAME = "1,A,https://x.example/a.jpg\n2," + "N" * 301 + ",https://x.example/b.jpg\n"


@pytest.fixture
def limited(make_settings, bucket):
    settings = make_settings(
        s3_bucket=bucket, max_rows=3, max_urls_per_row=2, max_cell_chars=300, max_url_chars=120, max_upload_bytes=50_000
    )
    with TestClient(create_app(settings)) as c:
        yield c, settings


def post(client, body: bytes | str, name: str = "p.csv"):
    data = body.encode() if isinstance(body, str) else body
    return client.post("/api/upload", headers=AUTH, files={"file": (name, data, "text/csv")})


@pytest.mark.parametrize(
    "body,row,column,message",
    [
        (HEADER + "".join(f"{i},P{i},https://x.example/{i}.jpg\n" for i in range(1, 6)), 5, None, "at most 3 products"),
        (
            HEADER + '1,A,https://x.example/a.jpg\n2,B,"https://x.example/1.jpg, https://x.example/2.jpg, '
            'https://x.example/3.jpg"\n',
            3,
            "Input Image Urls",
            "3 URLs in one row; at most 2",
        ),
        (HEADER + LONG_NAME, 3, "Product Name", "longer than 300 characters"),
        (HEADER + "1,A,https://x.example/" + "a" * 150 + ".jpg\n", 2, "Input Image Urls", "longer than 120"),
    ],
    ids=["rows", "urls-per-row", "cell-chars", "url-chars"],
)
def test_limits_are_422_naming_the_row(limited, body: str, row: int, column, message: str) -> None:
    client, settings = limited
    before = count_requests(settings)
    r = post(client, body)
    assert r.status_code == 422, r.text
    [err] = r.json()["errors"]
    assert (err["row"], err["column"]) == (row, column) and message in err["message"]
    assert count_requests(settings) == before


@pytest.mark.parametrize(
    "body,code,message",
    [
        ((HEADER + "1,Café,https://x.example/a.jpg\n").encode("cp1252"), 400, "not valid UTF-8"),
        ((HEADER + "1,Café,https://x.example/a.jpg\n").encode("utf-16"), 400, "UTF-16"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), 415, "binary"),
        (b"PK\x03\x04\x14\x00\x00\x00\x08\x00", 415, "binary"),  # an .xlsx (zip)
        (HEADER.encode(), 422, "no products"),
        (b"", 422, "file is empty"),
        (b"\n\n  \n", 422, "file is empty"),
        (b"just some text\n", 422, "missing header row"),
        (HEADER + '1,"unterminated,https://x.example/a.jpg\n', 422, ""),
    ],
    ids=["cp1252", "utf16", "png", "xlsx", "header-only", "empty", "blank", "no-header", "unterminated-quote"],
)
def test_unreadable_files_get_a_clear_answer(client, body: bytes | str, code: int, message: str) -> None:
    r = post(client, body)
    assert r.status_code == code, r.text
    assert r.headers["content-type"] == "application/json"
    assert message in r.json()["errors"][0]["message"]


def test_bom_crlf_and_quoted_commas_and_newlines_are_accepted(client, settings) -> None:
    from image_pipeline.domain.catalog.csv_input import parse_csv
    from image_pipeline.domain.keys import input_key
    from image_pipeline.domain.services import make_store

    body = (
        "\ufeffS.No.,Product Name,Input Image Urls\r\n"
        '1,"Shoe, red\r\nsize 9 ""wide""","https://x.example/a.jpg, https://x.example/b.jpg"\r\n'
        "2,Hat,https://x.example/c.jpg\r\n"
    ).encode()
    r = post(client, body)
    assert r.status_code == 202, r.text
    assert "2 products, 3 images" in r.json()["message"]
    stored = make_store(settings).get(input_key(r.json()["request_id"]))
    assert parse_csv(stored).rows[0].name == 'Shoe, red size 9 "wide"'  # a line break in a name: one space


def test_many_problems_are_capped_and_said_so(make_settings, bucket) -> None:
    with TestClient(create_app(make_settings(s3_bucket=bucket, max_reported_errors=5))) as c:
        r = post(c, HEADER + "".join(f"{i},P,nope\n" for i in range(100)))
        assert r.status_code == 422 and len(r.json()["errors"]) == 5 and "more problems not shown" in r.json()["detail"]


@pytest.fixture(params=[""], ids=["no-root-path"])
def live_api(request, make_settings, bucket) -> Iterator[tuple[str, int, Settings]]:
    """The app under a real uvicorn on loopback, so request bodies really stream; `request.param` is
    uvicorn's `--root-path` (the tests that take it send their requests under that prefix)."""
    import uvicorn

    port = free_port()
    settings = make_settings(s3_bucket=bucket, max_upload_bytes=100_000, upload_rate_limit="1/minute")
    app = create_app(settings)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", root_path=request.param
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield "127.0.0.1", port, settings
    server.should_exit = True
    thread.join(timeout=30)


def test_oversized_chunked_upload_is_refused_while_streaming(live_api) -> None:
    """No Content-Length to check: the body is counted as it arrives and the 413 comes long before the end."""
    host, port, _ = live_api
    boundary = "xBOUNDARYx"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.csv"\r\n'
        "Content-Type: text/csv\r\n\r\n" + HEADER
    ).encode()
    row = b"".join(b"%d,Product,https://x.example/%d.jpg\n" % (i, i) for i in range(1500))  # ~50 KB per chunk
    total_planned = 2000 * len(row)  # ~115 MB, 1000x the limit
    sent = 0
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(
            (
                "POST /api/upload HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer test-key-1\r\n"
                f"Content-Type: multipart/form-data; boundary={boundary}\r\nTransfer-Encoding: chunked\r\n\r\n"
            ).encode()
        )
        try:
            for i in range(2000):
                chunk = head + row if i == 0 else row
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
                if select.select([sock], [], [], 0)[0]:
                    break  # the answer is already here
        except (BrokenPipeError, ConnectionResetError):
            pass
        response = b""
        try:
            while b"\r\n\r\n" not in response or not response.rstrip().endswith(b"}"):
                data = sock.recv(65536)
                if not data:
                    break
                response += data
        except ConnectionResetError:
            pass
    status_line, _, rest = response.partition(b"\r\n")
    assert b" 413 " in status_line, response[:300]
    body = json.loads(rest.split(b"\r\n\r\n", 1)[1])
    assert "larger than 100,000 bytes" in body["detail"]
    assert sent < total_planned // 4, f"sent {sent:,} of {total_planned:,} bytes before the 413"


def _headers_only(host: str, port: int, key: str, path: str = "/api/upload", length: int = 90000) -> bytes:
    """Send an upload's headers and no body; return whatever the server answers meanwhile."""
    with socket.create_connection((host, port), timeout=60) as sock:
        sock.sendall(
            (
                f"POST {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {key}\r\n"
                f"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: {length}\r\n\r\n"
            ).encode()
        )
        response = b""
        while not response.rstrip().endswith(b"}"):
            data = sock.recv(65536)  # a server waiting for the body would time out here
            if not data:
                break
            response += data
    return response


def test_bad_key_and_rate_limit_are_answered_before_the_body_is_sent(live_api) -> None:
    from tests.support.api import new_db_key

    host, port, settings = live_api
    r = _headers_only(host, port, "not-a-key")
    assert r.startswith(b"HTTP/1.1 401 ") and b"invalid API key" in r

    key = new_db_key(settings)
    ok = httpx.post(
        f"http://{host}:{port}/api/upload",
        headers={"Authorization": f"Bearer {key}"},
        files={"file": ("p.csv", HEADER + "1,A,https://x.example/a.jpg\n")},
        timeout=60,
    )
    assert ok.status_code == 202, ok.text
    r = _headers_only(host, port, key)
    assert r.startswith(b"HTTP/1.1 429 ") and b"retry-after: " in r.lower()


@pytest.mark.parametrize("live_api", ["/imgpipe"], ids=["root-path"], indirect=True)
def test_the_gate_and_the_body_limit_hold_under_a_root_path(live_api) -> None:
    """Issue 15 item 8. Fails before the fix: under `uvicorn --root-path /imgpipe` the scope's path is
    `/imgpipe/api/upload`, the middlewares compared it with `/api/upload` and let the request through:
    the server then waited for the body (no 401 before it, no 413 on the declared length) and every
    /api answer lacked `Cache-Control: no-store`. (The proxy in front strips the prefix: uvicorn adds
    `root_path` to the path it reports, so the request line carries the route path.)"""
    from tests.support.api import new_db_key

    path = "/api/upload"
    host, port, settings = live_api
    r = _headers_only(host, port, "not-a-key", path)
    assert r.startswith(b"HTTP/1.1 401 ") and b"invalid API key" in r
    # fresh keys: the limit here is 1/minute, counted in the Redis every test worker shares
    r = _headers_only(host, port, new_db_key(settings), path, length=50_000_000)
    assert r.startswith(b"HTTP/1.1 413 ") and b"larger than 100,000 bytes" in r

    key = new_db_key(settings)
    ok = httpx.post(
        f"http://{host}:{port}{path}",
        headers={"Authorization": f"Bearer {key}"},
        files={"file": ("p.csv", HEADER + "1,A,https://x.example/a.jpg\n")},
        timeout=60,
    )
    assert ok.status_code == 202, ok.text
    assert ok.headers["cache-control"] == "no-store"
    r = _headers_only(host, port, key, path)
    assert r.startswith(b"HTTP/1.1 429 ") and b"retry-after: " in r.lower()
