"""The read-only views: a key's recent requests and one request's per-URL results, and the web page shell."""

from image_pipeline.defs.resources import build_resources
from image_pipeline.domain.request.chunks import compress_request
from image_pipeline.domain.request.finish import write_output
from image_pipeline.domain.request.validate import validate_request
from tests.support.api import AUTH, OTHER
from tests.support.inputs import csv_bytes, make_image


def upload(client, csv: bytes, name: str = "p.csv") -> str:
    r = client.post("/api/upload", headers=AUTH, files={"file": (name, csv, "text/csv")})
    assert r.status_code == 202, r.text
    return r.json()["request_id"]


def test_recent_requests_are_per_key_and_newest_first(client) -> None:
    first = upload(client, csv_bytes([("1", "A", ["https://img.example/a.jpg"])]), "first.csv")
    second = upload(client, csv_bytes([("1", "B", ["https://img.example/b.jpg"])]), "second.csv")
    mine = client.get("/api/requests", headers=AUTH).json()["requests"]
    ids = [r["request_id"] for r in mine]
    assert ids.index(second) < ids.index(first)
    by_id = {r["request_id"]: r for r in mine}
    assert by_id[first]["filename"] == "first.csv" and by_id[first]["status"] == "pending"
    assert by_id[first]["progress"] == {"total": 1, "done": 0, "failed": 0} and "owner" not in by_id[first]
    others = client.get("/api/requests", headers=OTHER).json()["requests"]
    assert not {first, second} & {r["request_id"] for r in others}
    assert len(client.get("/api/requests?limit=1", headers=AUTH).json()["requests"]) == 1
    assert client.get("/api/requests?limit=0", headers=AUTH).status_code == 422
    assert client.get("/api/requests").status_code == 401


def test_results_list_pending_urls_then_outcomes(client, settings, image_server) -> None:
    good = image_server.add("/h/ok.jpg", make_image("JPEG", (400, 300)))
    missing = image_server.url("/h/missing.jpg")
    rid = upload(client, csv_bytes([("1", "<b>Shoe</b>", [good, missing]), ("2", "Hat", [good])]))

    before = client.get(f"/api/requests/{rid}/results", headers=AUTH)
    assert before.status_code == 200, before.text
    doc = before.json()
    assert doc["total_products"] == 2 and [p["name"] for p in doc["products"]] == ["<b>Shoe</b>", "Hat"]
    assert [i["status"] for p in doc["products"] for i in p["images"]] == ["pending"] * 3
    assert doc["products"][0]["row"] == 2 and doc["products"][1]["images"][0]["index"] == 2

    ctx = build_resources(settings)["pipeline"].context()
    validate_request(ctx, rid)
    compress_request(ctx, rid)
    write_output(ctx, rid)

    doc = client.get(f"/api/requests/{rid}/results", headers=AUTH).json()
    assert doc["status"] == "partially_failed" and doc["progress"] == {"total": 3, "done": 2, "failed": 1}
    ok, bad = doc["products"][0]["images"]
    assert ok["status"] == "done" and ok["output_url"].startswith("http://testserver/files/requests/")
    assert 0 < ok["bytes_out"] < ok["bytes_in"]
    assert bad["status"] == "failed" and "404" in bad["error"] and bad["output_url"] is None
    assert doc["bytes_in"] == 2 * ok["bytes_in"] and doc["output_csv_url"]

    page = client.get(f"/api/requests/{rid}/results?offset=1&limit=1", headers=AUTH).json()
    assert [p["serial"] for p in page["products"]] == ["2"] and page["total_products"] == 2
    assert client.get(f"/api/requests/{rid}/results", headers=OTHER).status_code == 404


def test_page_and_its_script_are_served(client) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert '<label for="csv-file">' in page.text and '<label for="api-key">' in page.text
    assert "/static/app.js" in page.text
    js = client.get("/static/app.js")
    assert js.status_code == 200 and "textContent" in js.text and "innerHTML" not in js.text
    assert client.get("/static/app.css").status_code == 200


class _CountingStore:
    """The app's object store, counting the bytes read from it."""

    def __init__(self, store) -> None:
        self.store, self.read = store, 0

    def get(self, key: str) -> bytes:
        data = self.store.get(key)
        self.read += len(data)
        return data

    def iter_chunks(self, key: str, chunk_size: int = 1 << 16):
        for chunk in self.store.iter_chunks(key, chunk_size):
            self.read += len(chunk)
            yield chunk

    def __getattr__(self, name: str):
        return getattr(self.store, name)


def test_a_page_of_a_large_pending_request_reads_only_its_rows(client) -> None:
    """Issue 15 item 8. Fails before the fix: before the pipeline has stored the parsed rows, every
    /results call downloaded the whole input CSV and parsed all of it (10,000 rows here) for one page."""
    rows = [
        (str(i), f"P{i}", [f"https://img.example/{i}/a.jpg", f"https://img.example/{i}/b.jpg"]) for i in range(10_000)
    ]
    data = csv_bytes(rows)
    rid = upload(client, data)
    counting = client.app.state.store = _CountingStore(client.app.state.store)

    doc = client.get(f"/api/requests/{rid}/results?limit=5", headers=AUTH).json()
    assert [p["serial"] for p in doc["products"]] == ["0", "1", "2", "3", "4"]
    assert doc["total_products"] == 10_000 and doc["products"][4]["images"][1]["index"] == 9
    assert {i["status"] for p in doc["products"] for i in p["images"]} == {"pending"}
    assert counting.read < len(data) // 10, f"read {counting.read:,} of {len(data):,} bytes for 5 products"

    deep = client.get(f"/api/requests/{rid}/results?offset=9998&limit=100", headers=AUTH).json()
    assert [p["serial"] for p in deep["products"]] == ["9998", "9999"]
    assert deep["products"][0]["images"][0] == {
        "index": 19996,
        "url": "https://img.example/9998/a.jpg",
        "status": "pending",
        "error": None,
        "failure_class": None,
        "bytes_in": None,
        "bytes_out": None,
        "kept_original": False,
        "renditions": None,
        "output_url": None,
        "score": None,
    }
