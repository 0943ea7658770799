"""The sync memory in Dagster: a catalogue materialised twice (in-process, real S3, PostgreSQL) shows
per-request sync counts on `compressed_images`, and `origins_honour_validators` warns about an origin
that answers every conditional fetch with 200 and a new ETag."""

import uuid

import dagster as dg

from image_pipeline.defs import checks
from image_pipeline.defs.resources import build_resources
from tests.support.inputs import csv_bytes, make_image
from tests.support.pipeline import run_partition


def synced(settings):
    s = settings.model_copy(update={"sync_memory": True})
    return s, build_resources(s)


def meta_of(result: dg.ExecuteInProcessResult) -> dict:
    mats = {m.asset_key.to_user_string(): m for m in result.get_asset_materialization_events()}
    return {k: v.value for k, v in mats["compressed_images"].materialization.metadata.items()}


def test_second_sync_counts_unchanged_urls_and_the_bytes_not_fetched(settings, instance, submit, image_server):
    image_server.validators = "honour"
    _, resources = synced(settings)
    urls = [image_server.add(f"/s/{i}.jpg", make_image(seed=i)) for i in range(4)]
    csv = csv_bytes([("1", "A", urls[:2]), ("2", "B", urls[2:])])
    owner = f"key_{uuid.uuid4().hex[:20]}"  # a tenant of its own: its memory starts empty
    first = meta_of(run_partition(submit(csv, owner=owner), resources, instance))
    assert (first["sync_new"], first["sync_unchanged"], first["sync_encoded"]) == (4, 0, 4)

    image_server.add("/s/3.jpg", make_image(seed=33))  # one image changes at the origin
    result = run_partition(submit(csv, owner=owner), resources, instance)
    second = meta_of(result)
    assert (second["sync_new"], second["sync_changed"], second["sync_unchanged"]) == (0, 1, 3)
    assert second["sync_encoded"] == 1 and second["sync_validators_ignored"] == 0
    assert second["sync_bytes_not_refetched"] == sum(len(image_server.files[f"/s/{i}.jpg"][1]) for i in range(3))
    honoured = {e.check_name: e for e in result.get_asset_check_evaluations()}[checks.ORIGINS_HONOUR_VALIDATORS]
    assert honoured.passed and honoured.metadata["conditional_fetches"].value == 3


def test_an_origin_ignoring_validators_gets_a_warning(settings, instance, submit, image_server):
    image_server.validators = "ignore"  # 200 and a new ETag on every answer
    _, resources = synced(settings)
    urls = [image_server.add(f"/v/{i}.jpg", make_image(seed=i)) for i in range(3)]
    csv = csv_bytes([("1", "A", urls)])
    owner = f"key_{uuid.uuid4().hex[:20]}"
    assert run_partition(submit(csv, owner=owner), resources, instance).success
    result = run_partition(submit(csv, owner=owner), resources, instance)
    assert result.success  # a warning, not a failure
    found = {e.check_name: e for e in result.get_asset_check_evaluations()}[checks.ORIGINS_HONOUR_VALIDATORS]
    assert not found.passed and found.severity == dg.AssetCheckSeverity.WARN
    assert found.metadata["validators_ignored"].value == 3
    assert f"{image_server.allow}: 3 URL(s)" in found.metadata["hosts"].value
    assert meta_of(result)["sync_encoded"] == 0  # the bytes hashed the same: nothing encoded again
