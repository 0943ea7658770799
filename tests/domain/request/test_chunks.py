"""Chunked fan-out of compressed_images: chunks, manifests, order, per-chunk re-runs, event-log size."""

import csv
import io
import json

import dagster as dg

from image_pipeline.defs.assets import request_assets
from image_pipeline.defs.resources import build_resources
from image_pipeline.domain.keys import chunk_manifest_key, plan_key
from image_pipeline.domain.services import make_store
from tests.support.inputs import csv_bytes, make_image
from tests.support.pipeline import db_request, run_partition


def chunked(settings, size: int):
    s = settings.model_copy(update={"chunk_size": size, "fanout_threshold": size})
    return s, build_resources(s)


def serve(image_server, n: int, prefix: str = "c") -> list[str]:
    return [image_server.add(f"/{prefix}/{i}.png", make_image("PNG", (40 + i, 30), seed=i)) for i in range(n)]


def test_request_is_split_into_chunks_in_input_order(settings, instance, submit, image_server, monkeypatch) -> None:
    monkeypatch.setenv("IMGPIPE_WEBHOOK_SECRET", settings.webhook_secret)
    s, resources = chunked(settings, 5)
    urls = serve(image_server, 12)
    rid = submit(csv_bytes([(str(i), f"P{i}", urls[i : i + 3]) for i in range(0, 12, 3)]))
    result = run_partition(rid, resources, instance)
    assert result.success

    store = make_store(s)
    plan = json.loads(store.get(plan_key(rid)))
    assert [(c["start"], c["count"]) for c in plan] == [(0, 5), (5, 5), (10, 2)]
    manifests = [[json.loads(x) for x in store.get(chunk_manifest_key(rid, n)).splitlines()] for n in range(3)]
    assert [r["idx"] for m in manifests for r in m] == list(range(12))

    chunk_steps = [
        e for e in result.get_step_success_events() if (e.step_key or "").startswith("compressed_images.compress")
    ]
    assert len(chunk_steps) == 3
    mats = {m.asset_key.to_user_string(): m for m in result.get_asset_materialization_events()}
    meta = mats["compressed_images"].materialization.metadata
    assert meta["chunks"].value == 3 and meta["done"].value == 12

    req, results = db_request(s, rid)
    assert req.status == "completed"
    assert [r.width for r in results] == [40 + i for i in range(12)]
    out = list(csv.reader(io.StringIO(store.get(req.output_csv_key).decode())))
    outputs = [u for line in out[1:] for u in line[3].split(", ")]
    assert outputs == [store.public_url(r.output_key) for r in results]


def test_small_request_is_one_chunk(settings, resources, instance, submit, image_server) -> None:
    rid = submit(csv_bytes([("1", "A", serve(image_server, 3))]))
    assert run_partition(rid, resources, instance).success
    assert len(json.loads(make_store(settings).get(plan_key(rid)))) == 1


def test_rerun_redoes_only_the_chunk_without_a_manifest(settings, instance, submit, image_server, monkeypatch) -> None:
    monkeypatch.setenv("IMGPIPE_WEBHOOK_SECRET", settings.webhook_secret)
    s, resources = chunked(settings, 4)
    urls = serve(image_server, 10)
    rid = submit(csv_bytes([("1", "A", urls[:5]), ("2", "B", urls[5:])]))
    assert run_partition(rid, resources, instance).success
    store = make_store(s)
    before = {r.idx: store.get(r.output_key) for r in db_request(s, rid)[1]}

    # The middle chunk (URLs 4..7) loses its manifest and its images: only it is fetched again.
    store.client.delete_object(Bucket=s.s3_bucket, Key=chunk_manifest_key(rid, 1))
    for idx in range(4, 8):
        store.client.delete_object(Bucket=s.s3_bucket, Key=f"requests/{rid}/images/{idx:07d}.jpg")
    hits = len(image_server.hits)
    result = dg.materialize(request_assets, partition_key=rid, resources=resources, instance=instance)
    assert result.success
    assert sorted(image_server.hits[hits:]) == sorted(f"/c/{i}.png" for i in range(4, 8))
    meta = {m.asset_key.to_user_string(): m for m in result.get_asset_materialization_events()}
    assert meta["compressed_images"].materialization.metadata["skipped_already_stored"].value == 6
    after = {r.idx: store.get(r.output_key) for r in db_request(s, rid)[1]}
    assert after.keys() == before.keys() and len(after) == 10  # same keys, nothing duplicated
    listed = store.client.list_objects_v2(Bucket=s.s3_bucket, Prefix=f"requests/{rid}/images/")
    assert listed["KeyCount"] == 10


def test_event_log_grows_with_chunks_not_urls(settings, instance, submit, image_server, monkeypatch) -> None:
    """No per-URL events: 3 chunks of 2 URLs and 3 chunks of 8 URLs write the same number of events."""
    monkeypatch.setenv("IMGPIPE_WEBHOOK_SECRET", settings.webhook_secret)
    counts = []
    for size, prefix in ((2, "small"), (8, "big")):
        _, resources = chunked(settings, size)
        urls = serve(image_server, 3 * size, prefix)
        rid = submit(csv_bytes([(str(i), f"P{i}", [u]) for i, u in enumerate(urls)]))
        result = run_partition(rid, resources, instance)
        assert result.success
        counts.append(len(instance.get_records_for_run(result.run_id, limit=100_000).records))
    assert counts[0] == counts[1]


def test_chunks_without_a_step_are_done_by_the_summary(settings, instance, submit, image_server) -> None:
    """A run crashed between the plan and its chunk steps is retried from failure; Dagster then re-runs
    only steps that started, so no chunk step comes back and `summarize_chunks` gets nothing to collect.
    It must do the planned chunks itself rather than let the request finish with nothing processed."""
    from image_pipeline.defs.assets import summarize_chunks
    from image_pipeline.domain.request.chunks import plan_chunks
    from image_pipeline.domain.request.validate import validate_request

    s, resources = chunked(settings, 4)
    urls = serve(image_server, 10, prefix="nostep")
    rid = submit(csv_bytes([("1", "A", urls[:5]), ("2", "B", urls[5:])]))
    ctx = resources["pipeline"].context()
    validate_request(ctx, rid)  # what ran before the crash: validated_csv and the plan
    assert len(plan_chunks(ctx, rid, 4, 4)) == 3
    context = dg.build_op_context(resources={"pipeline": resources["pipeline"]}, partition_key=rid)
    result = next(iter(summarize_chunks(context)))  # (the asset checks follow; they need the asset)
    assert result.output_name == "result"
    assert result.metadata["chunks"].value == 3 and result.metadata["done"].value == 10
    store = make_store(s)
    assert all(store.exists(chunk_manifest_key(rid, n)) for n in range(3))
    assert db_request(s, rid)[0].done_count == 10


def test_progress_writer_thread_records_every_result_once(settings, resources, submit) -> None:
    """Batches written from the writer thread (one in flight, the rest joining the next) add up exactly."""
    from concurrent.futures import ThreadPoolExecutor

    from image_pipeline.domain.db.requests import UrlResult
    from image_pipeline.domain.request.progress import ProgressRecorder

    rid = submit(csv_bytes([(str(i), f"P{i}", [f"https://img.example.com/{i}.jpg"]) for i in range(450)]))
    ctx = resources["pipeline"].context()
    with ThreadPoolExecutor(1) as writer:
        recorder = ProgressRecorder(ctx, rid, max_batch=40, writer=writer)
        for i in range(450):
            ok = i % 10 != 0
            recorder(
                UrlResult(i, i + 1, f"https://img.example.com/{i}.jpg", "done" if ok else "failed",
                          error=None if ok else "HTTP 404", bytes_in=100 if ok else None, bytes_out=10 if ok else None)
            )  # fmt: skip
        recorder.flush()
    req, results = db_request(settings, rid)
    assert [r.idx for r in results] == list(range(450))
    assert (req.done_count, req.failed_count, req.bytes_in, req.bytes_out) == (405, 45, 40500, 4050)
