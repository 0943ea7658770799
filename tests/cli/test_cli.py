"""`imgpipe submit/status/download` against a real uvicorn API (the pipeline steps complete the request)."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from api.auth import owner_of
from image_pipeline.cli import main
from image_pipeline.defs.resources import build_resources
from image_pipeline.domain.db.engine import make_engine, session_factory
from image_pipeline.domain.db.requests import pending_requests
from image_pipeline.domain.request.chunks import compress_request
from image_pipeline.domain.request.finish import write_output
from image_pipeline.domain.request.validate import validate_request
from tests.support.inputs import csv_bytes, make_image
from tests.support.live_api import live_api
from tests.support.paths import ROOT
from tests.support.servers import free_port

KEY = "cli-key-000000000000000000000000000"  # at least IMGPIPE_API_KEY_MIN_CHARS (16)
IMGPIPE = str(Path(sys.executable).parent / "imgpipe")


@pytest.fixture
def api(make_settings, bucket, image_server, tmp_path, monkeypatch):
    port = free_port()
    settings = make_settings(
        s3_bucket=bucket,
        api_keys=KEY,
        api_port=port,
        api_base_url=f"http://127.0.0.1:{port}",
        fetch_allow=image_server.allow,
    )
    with live_api(settings, tmp_path / "api.log") as base:
        monkeypatch.setenv("IMGPIPE_API_URL", base)
        monkeypatch.setenv("IMGPIPE_API_KEY", KEY)
        monkeypatch.chdir(tmp_path)
        yield base, settings


def pending_ids(settings) -> set[str]:
    engine = make_engine(settings.resolved_database_url)
    with session_factory(engine)() as s:
        ids = {r.id for r in pending_requests(s) if r.owner == owner_of(KEY)}
    engine.dispose()
    return ids


def wait_for_pending(settings, known: set[str], timeout: float = 60) -> str:
    """The id of the CLI's new upload (the session's database is shared, so older ones are excluded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        mine = pending_ids(settings) - known
        if mine:
            return mine.pop()
        time.sleep(0.2)
    raise AssertionError("the CLI's upload never reached the database")


def process(settings, rid: str) -> None:
    ctx = build_resources(settings)["pipeline"].context()
    validate_request(ctx, rid)
    compress_request(ctx, rid)
    write_output(ctx, rid)


def test_submit_wait_status_download(api, image_server, tmp_path, capsys) -> None:
    base, settings = api
    urls = [image_server.add(f"/cli/{i}.jpg", make_image(seed=i)) for i in range(3)]
    csv_path = tmp_path / "products.csv"
    csv_path.write_bytes(csv_bytes([("1", "Shoe", urls[:2]), ("2", "Hat", urls[2:])]))

    # The console script, as a user runs it: env gives the URL and key; --wait shows a progress bar.
    env = dict(os.environ, IMGPIPE_API_URL=base, IMGPIPE_API_KEY=KEY)
    known = pending_ids(settings)
    proc = subprocess.Popen(
        [IMGPIPE, "submit", str(csv_path), "--wait", "--interval", "0.3"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    rid = wait_for_pending(settings, known)
    process(settings, rid)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert out.splitlines()[0] == f"{rid}  accepted: 2 products, 3 images"
    assert f"{rid}  completed  3 done, 0 failed of 3" in out and f"imgpipe download {rid}" in out
    assert "3/3" in err  # the progress bar reached the end

    assert main(["status", rid]) == 0
    assert "completed  3 done, 0 failed of 3" in capsys.readouterr().out
    assert main(["status", rid, "--json"]) == 0
    assert '"status": "completed"' in capsys.readouterr().out

    assert main(["download", rid]) == 0
    default = tmp_path / f"{rid}-output.csv"
    rows = list(csv.reader(io.StringIO(default.read_text(encoding="utf-8-sig"))))
    assert rows[0][-1] == "Output Image Urls" and len(rows[1][3].split(", ")) == 2
    assert main(["download", rid, "-o", str(tmp_path / "x.csv")]) == 0
    assert (tmp_path / "x.csv").read_bytes() == default.read_bytes()
    assert f"wrote {tmp_path / 'x.csv'}" in capsys.readouterr().out


def test_refusals_are_explained(api, tmp_path, capsys) -> None:
    base, settings = api
    bad = tmp_path / "bad.csv"
    bad.write_text("S.No.,Product Name,Input Image Urls\n1,,https://example.com/a.jpg\n1,Cap,ftp://example.com/b\n")
    assert main(["submit", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "CSV refused" in err and "row 2, Product Name:" in err and "row 3, Input Image Urls:" in err

    good = tmp_path / "good.csv"
    good.write_bytes(csv_bytes([("1", "A", ["https://img.example/a.jpg"])]))
    assert main(["submit", str(good), "--api-key", "wrong"]) == 1
    assert "invalid API key (HTTP 401)" in capsys.readouterr().err

    assert main(["submit", str(good)]) == 0
    rid = capsys.readouterr().out.split()[0]
    assert main(["download", rid]) == 1
    assert "output not ready: request is pending (HTTP 409)" in capsys.readouterr().err
    assert not (tmp_path / f"{rid}-output.csv").exists()
    assert main(["status", "00000000-0000-0000-0000-000000000000"]) == 1
    assert "not found (HTTP 404)" in capsys.readouterr().err
    assert main(["status", rid, "--api-url", f"http://127.0.0.1:{free_port()}"]) == 1
    assert "cannot reach the API" in capsys.readouterr().err
    assert main(["submit", str(tmp_path / "nope.csv")]) == 1


def test_console_script_is_installed() -> None:
    r = subprocess.run([IMGPIPE, "--help"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0 and all(c in r.stdout for c in ("submit", "status", "download", "serve"))


def test_submit_with_a_profile_and_options(api, image_server, tmp_path, capsys) -> None:
    """`--profile` and `--options` reach the upload: the request is processed with them, and a bad
    option is explained with its field."""
    base, settings = api
    url = image_server.add("/cli/p.jpg", make_image(size=(800, 600)))
    csv_path = tmp_path / "p.csv"
    csv_path.write_bytes(csv_bytes([("1", "Shoe", [url])]))
    options = '{"renditions": [{"name": "thumb", "format": "png", "width": 100}]}'
    assert main(["submit", str(csv_path), "--profile", "catalogue", "--options", options]) == 0
    rid = capsys.readouterr().out.split()[0]
    process(settings, rid)
    assert main(["download", rid, "-o", str(tmp_path / "o.csv")]) == 0
    header = next(csv.reader(io.StringIO((tmp_path / "o.csv").read_text(encoding="utf-8-sig"))))
    assert header[3:] == ["Output Image Urls", "Output Image Urls (square)", "Output Image Urls (thumb)"]
    capsys.readouterr()
    bad = '{"renditions": [{"name": "thumb", "quality": 500}]}'
    assert main(["submit", str(csv_path), "--profile", "catalogue", "--options", bad]) == 1
    err = capsys.readouterr().err
    assert "profile refused" in err and "options.renditions[2].quality" in err


def test_cancel(api, image_server, tmp_path, capsys) -> None:
    """`imgpipe cancel`: a pending request is canceled (again: the same, exit 0); a finished one is 409."""
    base, settings = api
    good = tmp_path / "good.csv"
    good.write_bytes(csv_bytes([("1", "A", [image_server.add("/cli/c.jpg", make_image(seed=5))])]))
    assert main(["submit", str(good)]) == 0
    rid = capsys.readouterr().out.split()[0]
    assert main(["cancel", rid]) == 0
    assert f"{rid}  canceled  0 done, 0 failed of 1  (canceled by its owner)" in capsys.readouterr().out
    assert main(["cancel", rid, "--json"]) == 0
    assert '"status": "canceled"' in capsys.readouterr().out

    assert main(["submit", str(good)]) == 0
    done = capsys.readouterr().out.split()[0]
    process(settings, done)
    assert main(["cancel", done]) == 1
    assert "request is completed; only a pending or processing request can be canceled (HTTP 409)" in (
        capsys.readouterr().err
    )
