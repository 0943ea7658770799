"""Output profiles through the API and the real pipeline steps (issue 16): chosen and validated at upload,
frozen into the request, several renditions per URL from one decode, the output CSV's extra columns,
the manifest, tenant profiles scoped to their key."""

from __future__ import annotations

import csv
import io
import json

import pytest
from PIL import Image

from bench.photos import make_photo
from image_pipeline.defs.resources import build_resources
from image_pipeline.domain.request.chunks import compress_request
from image_pipeline.domain.request.finish import write_output
from image_pipeline.domain.request.validate import validate_request
from tests.support.api import AUTH, OTHER
from tests.support.inputs import csv_bytes


def _upload(client, csv_data: bytes, headers=AUTH, **form) -> object:
    return client.post("/api/upload", headers=headers, files={"file": ("p.csv", csv_data)}, data=form)


def _run(settings, rid: str) -> None:
    ctx = build_resources(settings)["pipeline"].context()
    for step in (validate_request, compress_request, write_output):
        step(ctx, rid)


def _fetch(client, url: str) -> tuple[str, Image.Image]:
    r = client.get(url.replace("http://testserver", ""))
    assert r.status_code == 200, (url, r.text)
    img = Image.open(io.BytesIO(r.content))
    img.load()
    return r.headers["content-type"], img


@pytest.fixture
def photos(image_server) -> list[str]:
    # Photo-like (smooth shapes, light noise): pure noise reaches no perceptual target at any quality.
    return [image_server.add(f"/pr{i}.jpg", make_photo(i, (1600, 1200))) for i in range(2)]


def test_a_builtin_profile_makes_every_rendition(client, settings, photos) -> None:
    r = _upload(client, csv_bytes([("1", "Shoe", photos), ("2", "Hat", [photos[0]])]), profile="catalogue")
    assert r.status_code == 202, r.text
    rid = r.json()["request_id"]
    assert client.get(f"/api/requests/{rid}/manifest.json", headers=AUTH).status_code == 409
    _run(settings, rid)

    status = client.get(f"/api/status/{rid}", headers=AUTH).json()
    assert status["status"] == "completed" and status["profile"] == "catalogue"
    out = client.get(f"/api/requests/{rid}/output.csv", headers=AUTH).text
    table = list(csv.reader(io.StringIO(out)))
    assert table[0] == [
        "S.No.", "Product Name", "Input Image Urls",
        "Output Image Urls", "Output Image Urls (square)", "Output Image Urls (thumb)",
    ]  # fmt: skip
    zooms, squares, thumbs = (table[1][c].split(", ") for c in (3, 4, 5))
    assert len(zooms) == len(squares) == len(thumbs) == 2
    kind, zoom = _fetch(client, zooms[0])
    assert kind == "image/jpeg" and zoom.size == (1600, 1200)  # within 2048: never upscaled
    assert "progressive" in zoom.info
    kind, square = _fetch(client, squares[1])
    assert kind == "image/jpeg" and square.size == (1000, 1000)
    kind, thumb = _fetch(client, thumbs[0])
    assert kind == "image/webp" and thumb.size == (300, 225)

    manifest = client.get(f"/api/requests/{rid}/manifest.json", headers=AUTH).json()
    assert manifest["request_id"] == rid and manifest["profile"]["name"] == "catalogue"
    assert [u["idx"] for u in manifest["urls"]] == [0, 1, 2]
    first = manifest["urls"][0]["renditions"]
    assert [(m["name"], m["format"], m["width"], m["height"]) for m in first] == [
        ("zoom", "jpeg", 1600, 1200), ("square", "jpeg", 1000, 1000), ("thumb", "webp", 300, 225),
    ]  # fmt: skip
    assert all(m["status"] == "done" and m["bytes"] > 0 for m in first)
    assert first[2]["url"] == thumbs[0]

    results = client.get(f"/api/requests/{rid}/results", headers=AUTH).json()
    image = results["products"][0]["images"][0]
    assert image["output_url"] == zooms[0] and [m["name"] for m in image["renditions"]] == ["zoom", "square", "thumb"]


def test_no_profile_is_the_seed_output(client, settings, photos) -> None:
    rid = _upload(client, csv_bytes([("1", "Shoe", photos[:1])])).json()["request_id"]
    _run(settings, rid)
    table = list(csv.reader(io.StringIO(client.get(f"/api/requests/{rid}/output.csv", headers=AUTH).text)))
    assert table[0] == ["S.No.", "Product Name", "Input Image Urls", "Output Image Urls"]
    kind, img = _fetch(client, table[1][3])
    assert kind == "image/jpeg" and img.size == (1600, 1200) and table[1][3].endswith("/images/0000000.jpg")
    manifest = client.get(f"/api/requests/{rid}/manifest.json", headers=AUTH).json()
    assert manifest["profile"] == {"name": "default"}
    [m] = manifest["urls"][0]["renditions"]
    assert (m["name"], m["format"], m["quality"]) == ("image", "jpeg", settings.jpeg_quality)
    assert 0 < m["score"] < 100  # the first URL is always in the scored sample (SSIMULACRA2)


def test_options_override_a_profile(client, settings, photos) -> None:
    options = {"renditions": [{"name": "thumb", "format": "avif", "width": 120, "height": 120, "fit": "cover"},
                              {"name": "extra", "format": "png", "width": 64}]}  # fmt: skip
    r = _upload(client, csv_bytes([("1", "Shoe", photos[:1])]), profile="web", options=json.dumps(options))
    assert r.status_code == 202, r.text
    rid = r.json()["request_id"]
    _run(settings, rid)
    manifest = client.get(f"/api/requests/{rid}/manifest.json", headers=AUTH).json()
    made = {m["name"]: m for m in manifest["urls"][0]["renditions"]}
    assert list(made) == ["large", "thumb", "extra"]
    assert (made["thumb"]["format"], made["thumb"]["width"], made["thumb"]["height"]) == ("avif", 120, 120)
    # The profile's target (70), where the override is silent: AVIF's quality searched to reach it.
    assert made["thumb"]["score"] >= 70 - 5 and 20 <= made["thumb"]["quality"] <= 95
    assert (made["extra"]["format"], made["extra"]["width"]) == ("png", 64)
    assert made["large"]["format"] in ("avif", "webp", "jpeg")  # auto: the smallest


@pytest.mark.parametrize(
    "form,column",
    [
        ({"profile": "nope"}, "profile"),
        ({"options": "{not json"}, "options"),
        ({"options": json.dumps({"renditions": [{"name": "x", "quality": 0}]})}, "options.renditions[1].quality"),
        (
            {"options": json.dumps({"renditions": [{"name": "x", "fit": "cover", "width": 10}]})},
            "options.renditions[1]",
        ),
        ({"options": json.dumps({"renditions": [{"name": "x", "format": "gif"}]})}, "options.renditions[1].format"),
        ({"options": json.dumps({"renditions": [{"name": "x", "target": 99}]})}, "options.renditions[1].target"),
        ({"options": json.dumps({"sizes": []})}, "options"),
    ],
)
def test_invalid_profile_or_options_are_refused_with_the_field(client, photos, form, column) -> None:
    r = _upload(client, csv_bytes([("1", "Shoe", photos[:1])]), **form)
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["detail"].startswith("profile refused")
    assert column in [e["column"] for e in body["errors"]], body


def test_the_profile_is_part_of_the_idempotency_fingerprint(client, photos) -> None:
    data = csv_bytes([("1", "Shoe", photos[:1])])
    headers = {**AUTH, "Idempotency-Key": "profile-fp-1"}
    first = client.post("/api/upload", headers=headers, files={"file": ("p.csv", data)}, data={"profile": "web"})
    again = client.post("/api/upload", headers=headers, files={"file": ("p.csv", data)}, data={"profile": "web"})
    other = client.post("/api/upload", headers=headers, files={"file": ("p.csv", data)}, data={"profile": "catalogue"})
    assert first.status_code == 202 and again.json()["request_id"] == first.json()["request_id"]
    assert other.status_code == 422, other.text


def test_tenant_profiles_are_scoped_to_their_key(client, settings, photos) -> None:
    shop = {"renditions": [{"name": "main", "format": "webp", "quality": 70, "width": 800, "height": 800},
                           {"name": "sq", "format": "jpeg", "width": 200, "height": 200, "fit": "pad",
                            "background": "#000000"}]}  # fmt: skip
    r = client.put("/api/profiles/shop", headers=AUTH, json=shop)
    assert r.status_code == 201, r.text
    assert client.put("/api/profiles/shop", headers=AUTH, json=shop).status_code == 200  # replaced
    assert client.get("/api/profiles/shop", headers=AUTH).json()["source"] == "tenant"
    assert client.get("/api/profiles/shop", headers=OTHER).status_code == 404
    names = [p["name"] for p in client.get("/api/profiles", headers=AUTH).json()["profiles"]]
    assert names[0] == "default" and {"catalogue", "web", "shop"} <= set(names)
    assert "shop" not in [p["name"] for p in client.get("/api/profiles", headers=OTHER).json()["profiles"]]
    assert _upload(client, csv_bytes([("1", "Shoe", photos[:1])]), headers=OTHER, profile="shop").status_code == 422

    bad = client.put("/api/profiles/broken", headers=AUTH, json={"renditions": [{"name": "Bad Name", "width": -1}]})
    assert bad.status_code == 422
    assert {"renditions[0].name", "renditions[0].width"} <= {e["column"] for e in bad.json()["errors"]}

    rid = _upload(client, csv_bytes([("1", "Shoe", photos[:1])]), profile="shop").json()["request_id"]
    assert client.delete("/api/profiles/shop", headers=AUTH).status_code == 204  # the request froze its copy
    assert client.delete("/api/profiles/shop", headers=AUTH).status_code == 404
    _run(settings, rid)
    manifest = client.get(f"/api/requests/{rid}/manifest.json", headers=AUTH).json()
    made = manifest["urls"][0]["renditions"]
    assert [(m["name"], m["format"], m["width"], m["height"]) for m in made] == [
        ("main", "webp", 800, 600), ("sq", "jpeg", 200, 200),
    ]  # fmt: skip
    _, square = _fetch(client, made[1]["url"])
    assert square.convert("RGB").getpixel((100, 5)) == (0, 0, 0)  # padded in the profile's background
