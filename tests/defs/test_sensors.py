import dagster as dg

from image_pipeline.defs.partitions import request_partitions_def
from image_pipeline.defs.sensors import upload_sensor
from tests.support.inputs import csv_bytes


def evaluate(resources, instance, cursor=None):
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as ctx:
        return upload_sensor(ctx)


def test_no_pending_uploads_skips(resources, instance, settings) -> None:
    from image_pipeline.domain.db.engine import make_engine
    from image_pipeline.domain.db.models import ImageRequest

    engine = make_engine(settings.resolved_database_url)
    with engine.begin() as c:  # other tests' pending rows would show up here
        c.execute(ImageRequest.__table__.update().values(status="completed"))
    engine.dispose()
    result = evaluate(resources, instance)
    assert not result.run_requests and result.skip_reason


def test_new_uploads_get_a_partition_and_one_run_each(resources, instance, submit, settings) -> None:
    test_no_pending_uploads_skips(resources, instance, settings)
    a = submit(csv_bytes([("1", "A", ["https://x.example/a.jpg"])]))
    b = submit(csv_bytes([("1", "B", ["https://x.example/b.jpg", "https://x.example/c.jpg"])]))
    result = evaluate(resources, instance)
    assert [r.partition_key for r in result.run_requests] == [a, b]
    assert [r.run_key for r in result.run_requests] == [a, b]
    assert result.run_requests[1].tags["imgpipe/urls"] == "2"
    # Issue 15 item 6: fails before (no maximum runtime: a run could hold its slot for ever).
    assert result.run_requests[1].tags["dagster/max_runtime"] == str(
        int(settings.run_max_runtime + 2 * settings.run_max_runtime_per_url)
    )
    [add] = result.dynamic_partitions_requests
    assert add.partitions_def_name == request_partitions_def.name and list(add.partition_keys) == [a, b]
    assert int(result.cursor) > 0

    # The sensor claimed both: a second tick while the claims are fresh launches nothing again.
    instance.add_dynamic_partitions(request_partitions_def.name, [a, b])
    again = evaluate(resources, instance, cursor=result.cursor)
    assert not again.run_requests


def test_stale_claims_are_offered_again(settings, instance, submit, monkeypatch) -> None:
    """A request still pending after its claim went stale is offered again (the run_key dedupes it)."""
    from image_pipeline.defs.resources import build_resources

    monkeypatch.setenv("IMGPIPE_WEBHOOK_SECRET", settings.webhook_secret)
    resources = build_resources(settings.model_copy(update={"launch_claim_timeout": 0.001}))
    test_no_pending_uploads_skips(resources, instance, settings)
    a = submit(csv_bytes([("1", "A", ["https://x.example/a.jpg"])]))
    first = evaluate(resources, instance)
    assert [r.run_key for r in first.run_requests] == [a]
    instance.add_dynamic_partitions(request_partitions_def.name, [a])
    again = evaluate(resources, instance, cursor=first.cursor)
    assert [r.run_key for r in again.run_requests] == [a] and not again.dynamic_partitions_requests


def test_sensor_leaves_requests_claimed_by_the_fast_path(resources, instance, submit, settings) -> None:
    from image_pipeline.domain.db.engine import make_engine, session_factory
    from image_pipeline.domain.db.requests import claim_launches

    test_no_pending_uploads_skips(resources, instance, settings)
    a = submit(csv_bytes([("1", "A", ["https://x.example/a.jpg"])]))
    b = submit(csv_bytes([("1", "B", ["https://x.example/b.jpg"])]))
    engine = make_engine(settings.resolved_database_url)
    with session_factory(engine)() as s:
        assert claim_launches(s, [a], 60) == [a]  # what the API's fast path does first
    engine.dispose()
    result = evaluate(resources, instance)
    assert [r.run_key for r in result.run_requests] == [b]


def test_claimed_requests_do_not_crowd_out_newer_ones(resources, instance, submit, settings, monkeypatch) -> None:
    """Issue 15, item 13. More freshly claimed pending requests than the sensor's batch (the fast path
    is launching them, or their runs wait in the queue and the sensor re-offered them a moment ago)
    come before a new upload. Fails before the fix: the batch was the N oldest pending, all claimed,
    so the new upload was never launched while that backlog lasted."""
    from image_pipeline.defs import sensors
    from image_pipeline.domain.db.engine import make_engine, session_factory
    from image_pipeline.domain.db.requests import claim_launches

    test_no_pending_uploads_skips(resources, instance, settings)
    monkeypatch.setattr(sensors, "SENSOR_BATCH", 2)
    claimed = [submit(csv_bytes([("1", "A", ["https://x.example/a.jpg"])])) for _ in range(3)]
    new = submit(csv_bytes([("1", "B", ["https://x.example/b.jpg"])]))
    engine = make_engine(settings.resolved_database_url)
    with session_factory(engine)() as s:
        assert claim_launches(s, claimed, 60) == claimed
    engine.dispose()
    result = evaluate(resources, instance)
    assert [r.run_key for r in result.run_requests] == [new]
