"""One request full of hostile inputs, materialised for real: every bad URL fails alone, with its reason."""

import csv
import gzip
import io

import pytest

from image_pipeline.domain.services import make_store
from tests.support.inputs import csv_bytes, make_image, png_header_only
from tests.support.pipeline import db_request, run_partition
from tests.support.servers import Canary, encoded, redirect_to, trickle


@pytest.fixture
def settings(make_settings, bucket, image_server, webhook_receiver):
    # A short total deadline so the slow-trickle URL is cut quickly; everything else is local and fast.
    return make_settings(
        s3_bucket=bucket,
        fetch_allow=f"{image_server.allow},{webhook_receiver.allow}",
        fetch_total_timeout=3,
        fetch_max_bytes=5_000_000,
    )


def test_hostile_urls_fail_alone_and_good_ones_are_delivered(
    settings,
    resources,
    instance,
    submit,
    image_server,
) -> None:
    canary = Canary()
    try:
        srv = image_server
        good_jpeg = srv.add("/good.jpg", make_image("JPEG", (300, 200)))
        good_png = srv.add("/alpha.png", make_image("PNG", (120, 90), "RGBA"))
        full = make_image("JPEG", (400, 300), seed=3)
        hostile = {
            srv.add("/logo.jpg", b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/jpeg"): "SVG",
            srv.add("/doc.jpg", b"%PDF-1.7\n...", "application/pdf"): "PDF",
            srv.add("/page.jpg", b"<!doctype html><html>hi</html>", "text/html"): "HTML",
            srv.add("/bomb.png", png_header_only(30000, 30000), "image/png"): "pixels",
            srv.add("/cut.jpg", full[: len(full) // 2]): "truncated",
            srv.url("/to-canary"): "refused",
            srv.url("/gzip-bomb"): "exceeds the limit",
            srv.url("/slow"): "timed out",
            srv.url("/missing.jpg"): "404",
            srv.url("/a.jpg").replace("http://", "http://user:pw@"): "credentials",
            "http://169.254.169.254/latest/meta-data/iam": "refused",
            f"http://127.0.0.1:{canary.port}/direct": "refused",
        }
        srv.routes["/to-canary"] = redirect_to(f"http://2130706433:{canary.port}/x")
        srv.routes["/gzip-bomb"] = encoded(gzip.compress(b"\0" * 100_000_000, 9), "gzip")
        srv.routes["/slow"] = trickle
        bad = list(hostile)
        rows = [("1", "Good", [good_jpeg, *bad[:6]]), ("2", "=cmd|' /C calc'!A0", [*bad[6:], good_png])]
        rid = submit(csv_bytes(rows))

        assert run_partition(rid, resources, instance).success
        req, results = db_request(settings, rid)
        assert req.status == "partially_failed" and (req.done_count, req.failed_count) == (2, len(bad))
        by_url = {r.url: r for r in results}
        assert by_url[good_jpeg].status == by_url[good_png].status == "done"
        for url, reason in hostile.items():
            assert by_url[url].status == "failed" and reason in by_url[url].error, (url, by_url[url].error)
        assert canary.connections == 0

        out = list(csv.reader(io.StringIO(make_store(settings).get(req.output_csv_key).decode())))
        first_outputs, second_outputs = out[1][3].split(", "), out[2][3].split(", ")
        assert first_outputs[0] and not any(first_outputs[1:])  # slots kept, failures empty
        assert second_outputs[-1] and not any(second_outputs[:-1])
        assert out[2][1] == "'=cmd|' /C calc'!A0"  # formula neutralised
    finally:
        canary.close()
