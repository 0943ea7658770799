"""The web page in a real browser: Debian's chromium driven by Playwright against a real uvicorn API.

The request is processed by the real Dagster assets (`materialize`, real resources) in a thread of
the test, with a slow image server so the page can be seen mid-progress. Screenshots of the page
mid-progress and at completion are saved under test-artifacts/ and their paths printed.
"""

from __future__ import annotations

import csv
import io
import os
import threading
from pathlib import Path

import dagster as dg
import pytest

from image_pipeline.defs.assets import request_assets
from image_pipeline.defs.partitions import request_partitions_def
from image_pipeline.defs.resources import build_resources
from tests.support.inputs import csv_bytes, make_image
from tests.support.live_api import live_api
from tests.support.paths import ROOT
from tests.support.servers import delayed_route, free_port
from tests.support.services import WEBHOOK_SECRET

CHROMIUM = os.environ.get("IMGPIPE_TEST_CHROMIUM", "/usr/bin/chromium")  # Debian's chromium by default
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
ARTIFACTS = ROOT / "test-artifacts"
KEY = "browser-key-00000000000000000000000"  # at least IMGPIPE_API_KEY_MIN_CHARS (16)
IMAGE_DELAY_S = 0.8
EVIL_NAME = '<img src=x onerror="document.body.dataset.pwned=1">Boot'


@pytest.fixture
def stack(make_settings, bucket, image_server, tmp_path, monkeypatch):
    port = free_port()
    settings = make_settings(
        s3_bucket=bucket,
        api_keys=KEY,
        api_port=port,
        api_base_url=f"http://127.0.0.1:{port}",
        fetch_allow=image_server.allow,
        fetch_concurrency=1,
        per_host_concurrency=1,
    )
    monkeypatch.setenv("IMGPIPE_WEBHOOK_SECRET", WEBHOOK_SECRET)
    with live_api(settings, tmp_path / "api.log") as base, dg.instance_for_test() as instance:
        yield base, settings, instance


def process_in_background(rid: str, settings, instance: dg.DagsterInstance) -> tuple[threading.Thread, list]:
    """Run the request's partition through the real assets in a thread; outcome (or error) into the list."""
    outcome: list = []

    def run() -> None:
        try:
            instance.add_dynamic_partitions(request_partitions_def.name, [rid])
            result = dg.materialize(
                request_assets, partition_key=rid, resources=build_resources(settings), instance=instance
            )
            outcome.append(result.success)
        except Exception as exc:  # reported by the test
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_upload_watch_progress_and_download(stack, image_server, tmp_path) -> None:
    from playwright.sync_api import expect, sync_playwright

    base, settings, instance = stack
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: `make chromium` installs it (apt-get install chromium)"
    urls = []
    for i in range(5):
        path = f"/slow/{i}.jpg"
        image_server.routes[path] = delayed_route(make_image("JPEG", (640, 480), seed=i), IMAGE_DELAY_S)
        urls.append(image_server.url(path))
    missing = image_server.url("/slow/missing.jpg")
    good_csv = tmp_path / "products.csv"
    good_csv.write_bytes(
        csv_bytes([("1", EVIL_NAME, urls[:2]), ("2", "Bag", [urls[2], missing]), ("3", "Hat", urls[3:])])
    )
    bad_csv = b"S.No.,Product Name,Input Image Urls\n1,,https://example.com/a.jpg\n1,Cap,ftp://example.com/b.jpg\n"
    ARTIFACTS.mkdir(exist_ok=True)
    mid_shot, done_shot = ARTIFACTS / "web-page-mid-progress.png", ARTIFACTS / "web-page-complete.png"

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000}, accept_downloads=True)
        page.goto(base + "/")
        expect(page).to_have_title("image-pipeline")

        # The key is kept in the browser's storage.
        page.get_by_label("Bearer API key").fill(KEY)
        page.get_by_role("button", name="Save key").click()
        expect(page.locator("#message")).to_contain_text("Key saved")
        assert page.evaluate("localStorage.getItem('imgpipe.apiKey')") == KEY

        # A refused CSV, dropped on the drop zone: every problem with its row and column.
        page.evaluate(
            """(text) => {
                 const dt = new DataTransfer();
                 dt.items.add(new File([text], "bad.csv", {type: "text/csv"}));
                 document.getElementById("drop-zone").dispatchEvent(new DragEvent("drop", {dataTransfer: dt}));
               }""",
            bad_csv.decode(),
        )
        expect(page.locator("#drop-label")).to_contain_text("bad.csv")
        page.get_by_role("button", name="Upload and process").click()
        problems = page.locator("#problems-body tr")
        expect(page.locator("#upload-problems")).to_be_visible()
        texts = [problems.nth(i).inner_text() for i in range(problems.count())]
        assert len(texts) >= 3, texts
        assert any(t.startswith("2\t") and "Product Name" in t for t in texts), texts
        assert any(t.startswith("3\t") and "S.No." in t for t in texts), texts
        assert any(t.startswith("3\t") and "Input Image Urls" in t for t in texts), texts

        # The keyboard opens the file picker from the drop zone's button.
        page.get_by_role("button", name="Choose a CSV file").focus()
        with page.expect_file_chooser(timeout=10_000) as chooser:
            page.get_by_role("button", name="Choose a CSV file").press("Enter")
        chooser.value.set_files(str(good_csv))
        expect(page.locator("#drop-label")).to_contain_text("products.csv")
        page.get_by_role("button", name="Upload and process").click()
        expect(page.locator("#live")).to_be_visible()
        expect(page.locator("#upload-problems")).to_be_hidden()
        rid = page.locator("#live-id").inner_text()
        assert len(rid) == 36
        expect(page.locator("#live-progress-text")).to_contain_text("of 6 images")

        thread, outcome = process_in_background(rid, settings, instance)
        # Mid-progress: some images finished, not all.
        page.wait_for_function(
            "() => { const p = document.getElementById('live-progress'); return p.value > 0 && p.value < p.max; }",
            timeout=120_000,
        )
        expect(page.locator('#products-body tr[data-status="done"]').first).to_be_visible()
        page.screenshot(path=str(mid_shot), full_page=True)

        expect(page.locator("#live-progress-text")).to_contain_text("100 %", timeout=180_000)
        thread.join(120)
        assert outcome == [True], outcome
        expect(page.locator("#live-status")).to_have_text("partially failed")
        expect(page.locator("#download")).to_be_visible()
        page.screenshot(path=str(done_shot), full_page=True)

        # Product names are data: shown as text, never run as HTML.
        expect(page.locator("#products-body")).to_contain_text(EVIL_NAME)
        assert page.evaluate("document.body.dataset.pwned") is None
        assert page.locator("#products-body img[src='x']").count() == 0
        # Per-URL outcomes: before/after thumbnails, bytes saved, the failure in words.
        assert page.locator('#products-body tr[data-status="done"]').count() == 5
        failed = page.locator('#products-body tr[data-status="failed"]')
        expect(failed).to_have_count(1)
        expect(failed).to_contain_text("404")
        expect(page.locator("#products-body")).to_contain_text("saved")
        after = page.locator("#products-body img[alt^='recompressed']")
        expect(after).to_have_count(5)
        page.wait_for_function(
            "() => [...document.querySelectorAll(\"#products-body img[alt^='recompressed']\")]"
            ".every(i => i.complete && i.naturalWidth > 0)"
        )
        expect(page.locator("#live-bytes")).to_contain_text("saved")

        # The output CSV link (fetched with the bearer key, handed out as a blob).
        with page.expect_download() as download:
            page.locator("#download").click()
        rows = list(csv.reader(io.StringIO(Path(download.value.path()).read_text(encoding="utf-8-sig"))))
        assert rows[0][-1] == "Output Image Urls" and [r[0] for r in rows[1:]] == ["1", "2", "3"]
        assert rows[1][1] == EVIL_NAME and len(rows[1][3].split(", ")) == 2
        assert rows[2][3].count("/files/requests/") == 1  # the failed URL leaves its slot empty

        # The key's recent requests, with status.
        recent = page.locator("#recent-body tr").filter(has_text="products.csv")
        expect(recent.first).to_contain_text("partially failed")
        browser.close()

    print(f"\nweb page screenshots:\n  mid-progress: {mid_shot}\n  complete:     {done_shot}")
    assert mid_shot.stat().st_size > 10_000 and done_shot.stat().st_size > 10_000


def test_a_typed_key_and_a_profile_are_used_without_saving(stack, image_server, tmp_path) -> None:
    """Issue 16: a person who types the key and presses upload is no longer told to save it first; the
    profile picker lists the built-in profiles and the upload makes every rendition, shown per image."""
    from playwright.sync_api import expect, sync_playwright

    base, settings, instance = stack
    urls = [image_server.add(f"/pp/{i}.jpg", make_image("JPEG", (1200, 900), seed=i)) for i in range(2)]
    good_csv = tmp_path / "profiled.csv"
    good_csv.write_bytes(csv_bytes([("1", "Lamp", urls)]))
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(base + "/")
        page.get_by_label("Bearer API key").fill(KEY)
        page.get_by_label("Bearer API key").blur()  # typed, never saved
        assert page.evaluate("localStorage.getItem('imgpipe.apiKey')") is None
        profile = page.get_by_label("Output profile")
        expect(profile.locator("option[value='catalogue']")).to_have_count(1, timeout=30_000)
        profile.select_option("catalogue")
        page.locator("#csv-file").set_input_files(str(good_csv))
        page.get_by_role("button", name="Upload and process").click()
        expect(page.locator("#live")).to_be_visible()
        expect(page.locator("#message")).not_to_contain_text("first")
        rid = page.locator("#live-id").inner_text()
        thread, outcome = process_in_background(rid, settings, instance)
        thread.join(180)
        assert outcome == [True], outcome
        expect(page.locator("#live-status")).to_have_text("completed", timeout=60_000)
        renditions = page.locator("#products-body ul.renditions li")
        expect(renditions).to_have_count(6)  # 2 images x (zoom, square, thumb)
        expect(page.locator("#products-body")).to_contain_text("square: jpeg 1000×1000")
        expect(page.locator("#products-body")).to_contain_text("thumb: webp 300×225")
        browser.close()


def test_cancel_button_stops_a_running_request(stack, image_server, tmp_path) -> None:
    """Issue 17: the cancel button of a running request: the page shows it canceled, the button goes,
    the run stops (its chunk takes no further URL) and the images done before stay listed as done."""
    from playwright.sync_api import expect, sync_playwright

    base, settings, instance = stack
    urls = []
    for i in range(8):
        path = f"/cancel/{i}.jpg"
        image_server.routes[path] = delayed_route(make_image("JPEG", (320, 240), seed=i), IMAGE_DELAY_S)
        urls.append(image_server.url(path))
    good_csv = tmp_path / "cancel.csv"
    good_csv.write_bytes(csv_bytes([(str(i + 1), f"P{i}", [u]) for i, u in enumerate(urls)]))
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(base + "/")
        page.get_by_label("Bearer API key").fill(KEY)
        page.locator("#csv-file").set_input_files(str(good_csv))
        page.get_by_role("button", name="Upload and process").click()
        expect(page.locator("#live")).to_be_visible()
        rid = page.locator("#live-id").inner_text()
        cancel = page.get_by_role("button", name="Cancel this request")
        expect(cancel).to_be_visible()  # pending: it can be canceled already
        thread, outcome = process_in_background(rid, settings, instance)
        expect(page.locator('#products-body tr[data-status="done"]').first).to_be_visible(timeout=120_000)
        cancel.click()
        expect(page.locator("#live-status")).to_have_text("canceled", timeout=30_000)
        expect(page.locator("#cancel-message")).to_contain_text("Canceled")
        expect(cancel).to_be_hidden()
        thread.join(120)
        assert not thread.is_alive() and outcome and outcome != [True], outcome  # the run stopped, unfinished
        done = page.locator('#products-body tr[data-status="done"]').count()
        assert 1 <= done < len(urls), done
        expect(page.locator("#download")).to_be_hidden()  # no output CSV for a canceled request
        browser.close()
