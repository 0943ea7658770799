"""Asset checks of compressed_images, per partition, against real S3 (Swift), Postgres and images."""

from sqlalchemy import delete

from image_pipeline.defs import checks
from image_pipeline.domain.db.engine import make_engine, session_factory
from image_pipeline.domain.db.models import ImageResult
from image_pipeline.domain.services import make_store
from tests.support.inputs import csv_bytes, make_image
from tests.support.pipeline import db_request, run_partition


def test_checks_pass_on_a_good_request(resources, instance, submit, image_server) -> None:
    urls = [image_server.add(f"/c/{i}.jpg", make_image(seed=i)) for i in range(3)]
    missing = image_server.url("/c/missing.jpg")
    rid = submit(csv_bytes([("1", "A", urls[:2]), ("2", "B", [urls[2], missing])]))
    result = run_partition(rid, resources, instance)
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(evaluations) == {
        checks.EVERY_URL_HAS_RESULT, checks.OUTPUTS_DECODE_AS_JPEG, checks.OUTPUTS_NOT_LARGER,
        checks.RENDITIONS_FOLLOW_PROFILE, checks.ORIGINS_HONOUR_VALIDATORS,
    }  # fmt: skip
    assert all(e.passed for e in evaluations.values())
    assert evaluations[checks.EVERY_URL_HAS_RESULT].metadata["expected"].value == 4  # the failed URL counts
    assert evaluations[checks.OUTPUTS_DECODE_AS_JPEG].metadata["checked"].value == 3
    assert evaluations[checks.EVERY_URL_HAS_RESULT].target_materialization_data is not None


def test_checks_find_missing_results_broken_and_larger_outputs(settings, resources, instance, submit, image_server):
    urls = [image_server.add(f"/d/{i}.jpg", make_image(seed=i)) for i in range(4)]
    rid = submit(csv_bytes([("1", "A", urls)]))
    assert run_partition(rid, resources, instance).success
    _, results = db_request(settings, rid)
    store = make_store(settings)
    store.put(results[1].output_key, b"\xff\xd8 not really a jpeg", "image/jpeg")
    engine = make_engine(settings.resolved_database_url)
    with session_factory(engine)() as s:
        s.execute(delete(ImageResult).where(ImageResult.request_id == rid, ImageResult.idx == 3))
        row = s.get(ImageResult, (rid, 2))
        row.bytes_out = row.bytes_in + 1
        s.commit()
    engine.dispose()

    found = {r.check_name: r for r in checks.evaluate(resources["pipeline"].context(), rid, decode_sample=10)}
    assert not found[checks.EVERY_URL_HAS_RESULT].passed
    assert "- 3" in found[checks.EVERY_URL_HAS_RESULT].metadata["missing_indices"].value
    assert not found[checks.OUTPUTS_DECODE_AS_JPEG].passed
    assert "#1: does not decode" in found[checks.OUTPUTS_DECODE_AS_JPEG].metadata["bad"].value
    assert (
        not found[checks.OUTPUTS_NOT_LARGER].passed
        and "#2:" in found[checks.OUTPUTS_NOT_LARGER].metadata["larger"].value
    )

    # A kept original may be larger than nothing else produced: recorded as kept, not a failure.
    engine = make_engine(settings.resolved_database_url)
    with session_factory(engine)() as s:
        s.get(ImageResult, (rid, 2)).kept_original = True
        s.commit()
    engine.dispose()
    found = {r.check_name: r for r in checks.evaluate(resources["pipeline"].context(), rid, decode_sample=1)}
    assert (
        found[checks.OUTPUTS_NOT_LARGER].passed
        and found[checks.OUTPUTS_NOT_LARGER].metadata["kept_original"].value == 1
    )
    assert found[checks.OUTPUTS_DECODE_AS_JPEG].metadata["checked"].value == 1  # sampled


def test_a_profile_request_is_checked_against_its_renditions(settings, resources, instance, submit, image_server):
    """Issue 16: a profile's renditions are checked against their specs (sRGB, the fit's size rule, never
    upscaled); a rendition replaced by one that breaks them fails the check, naming URL and rendition."""
    import io
    import json

    from PIL import Image

    from image_pipeline.domain.profiles import BUILTIN

    urls = [image_server.add(f"/pc/{i}.jpg", make_image(size=(640, 480), seed=i)) for i in range(2)]
    rid = submit(csv_bytes([("1", "A", urls)]), profile=BUILTIN["catalogue"])
    result = run_partition(rid, resources, instance)
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert all(e.passed for e in evaluations.values()), {k: e.metadata for k, e in evaluations.items()}
    rules = evaluations[checks.RENDITIONS_FOLLOW_PROFILE].metadata
    assert rules["profile"].value == "catalogue" and rules["renditions_checked"].value == 6

    _, results = db_request(settings, rid)
    thumb = next(m for m in json.loads(results[0].renditions) if m["name"] == "thumb")
    buf = io.BytesIO()
    Image.new("RGB", (thumb["width"], thumb["height"]), "red").save(buf, "JPEG")  # the wrong format
    make_store(settings).put(thumb["key"], buf.getvalue(), "image/webp")
    zoom = json.loads(results[1].renditions)[0]
    buf = io.BytesIO()
    Image.new("CMYK", (1280, 960)).save(buf, "JPEG")  # upscaled, and not sRGB
    make_store(settings).put(zoom["key"], buf.getvalue(), "image/jpeg")
    engine = make_engine(settings.resolved_database_url)
    with session_factory(engine)() as s:
        row = s.get(ImageResult, (rid, 1))
        made = json.loads(row.renditions)
        made[0].update(width=1280, height=960)
        row.renditions = json.dumps(made)
        s.commit()
    engine.dispose()
    found = {r.check_name: r for r in checks.evaluate(resources["pipeline"].context(), rid, decode_sample=10)}
    assert not found[checks.OUTPUTS_DECODE_AS_JPEG].passed
    assert "#0: thumb: stored as JPEG, recorded as webp" in found[checks.OUTPUTS_DECODE_AS_JPEG].metadata["bad"].value
    bad = found[checks.RENDITIONS_FOLLOW_PROFILE].metadata["bad"].value
    assert not found[checks.RENDITIONS_FOLLOW_PROFILE].passed
    assert "#1: zoom: upscaled from 640x480 to 1280x960" in bad and "#1: zoom: not sRGB (mode CMYK" in bad
