"""Every real-world CSV the API accepts is processed end to end: its URLs are rewritten to a loopback
image server (tests cannot reach the internet), the partition is materialised, and the output CSV
keeps the file's rows, its inputs and one output per input URL, in order."""

import csv
import io
from urllib.parse import urlsplit

import pytest

from image_pipeline.domain.catalog.csv_input import parse_csv
from image_pipeline.domain.services import make_store
from tests.support.inputs import ACCEPTED, PEERS, make_image
from tests.support.pipeline import db_request, run_partition


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_peer_fixture_is_processed(name: str, settings, resources, instance, submit, image_server) -> None:
    raw = (PEERS / name).read_bytes()
    hosts = {urlsplit(u).netloc for row in parse_csv(raw).rows for u in row.urls}
    text = raw.decode("utf-8-sig")
    for host in hosts:  # https://images.pexels.com/x.jpeg -> http://127.0.0.1:PORT/images.pexels.com/x.jpeg
        text = text.replace(f"https://{host}", f"{image_server.url('/' + host)}")
    parsed = parse_csv(text.encode())
    assert parsed.ok, parsed.errors
    for i, url in enumerate(u for row in parsed.rows for u in row.urls):
        image_server.add(urlsplit(url).path, make_image(size=(64, 48), seed=i))

    rid = submit(text.encode())
    assert run_partition(rid, resources, instance).success
    req, results = db_request(settings, rid)
    assert req.status == "completed", [r.error for r in results if r.error]
    assert req.done_count == parsed.url_count == len(results)

    out = list(csv.reader(io.StringIO(make_store(settings).get(req.output_csv_key).decode())))
    assert len(out) == 1 + ACCEPTED[name]
    for row, line in zip(parsed.rows, out[1:], strict=True):
        assert line[2].split(", ") == list(row.urls)
        assert len(line[3].split(", ")) == len(row.urls) and all(line[3].split(", "))
