"""Heavy clients shared by the runs a long-lived process executes (image_pipeline.domain.process_cache): the
same configuration gets the same S3 client and database engine run after run, another configuration
its own, and they stay correct while the process keeps running (the database dropping its connections
between runs, the S3 IO manager writing through the shared client)."""

from __future__ import annotations

import pickle

import dagster as dg
from sqlalchemy import text

from image_pipeline.defs.resources import build_resources
from image_pipeline.domain.images.fetch import default_tls_context, make_client
from image_pipeline.domain.images.url_policy import FetchPolicy
from image_pipeline.domain.objects.s3 import make_s3_client


def _run_context(settings):
    """What one run builds: fresh resources (Dagster makes them per run), then the pipeline context."""
    return build_resources(settings)["pipeline"].context()


def test_runs_with_the_same_configuration_share_clients_and_a_new_one_gets_its_own(
    make_settings, bucket, s3_endpoint, pg_url
) -> None:
    settings = make_settings(s3_bucket=bucket)
    first, second = _run_context(settings), _run_context(settings)
    assert first is not second  # each run has its own context...
    assert second.store.client is first.store.client  # ...on the same S3 client
    assert second.sessions.kw["bind"] is first.sessions.kw["bind"]  # and the same engine (its pool)
    first.store.put("shared/a.txt", b"one")
    assert second.store.get("shared/a.txt") == b"one"

    other_region = _run_context(make_settings(s3_bucket=bucket, s3_region="eu-west-1"))
    assert other_region.store.client is not first.store.client
    assert other_region.store.client.meta.region_name == "eu-west-1"
    other_db = _run_context(make_settings(s3_bucket=bucket, database_url=pg_url + "?application_name=other"))
    assert other_db.sessions.kw["bind"] is not first.sessions.kw["bind"]


def test_a_cached_engine_survives_the_database_dropping_its_connections(make_settings, bucket, pg_url) -> None:
    """A worker keeps its engine between runs; PostgreSQL may close the pooled connections meanwhile
    (restart, idle timeout, failover). The next run gets working connections, not an error."""
    from tests.support.services import pg_admin_engine

    settings = make_settings(s3_bucket=bucket, database_url=pg_url + "?application_name=imgpipe_dropme")
    ctx = _run_context(settings)
    with ctx.sessions() as s:
        assert s.execute(text("select 1")).scalar() == 1  # the pool now holds an idle connection
    admin = pg_admin_engine()
    with admin.connect() as c:
        killed = c.execute(
            text("select count(pg_terminate_backend(pid)) from pg_stat_activity where application_name = :a"),
            {"a": "imgpipe_dropme"},
        ).scalar()
    admin.dispose()
    assert killed >= 1
    later = _run_context(settings)
    assert later.sessions.kw["bind"] is ctx.sessions.kw["bind"]  # the same engine, its connection dead
    with later.sessions() as s:
        assert s.execute(text("select 1")).scalar() == 1


def test_the_s3_io_manager_stores_outputs_through_the_shared_client(make_settings, bucket, s3_endpoint) -> None:
    """The IO manager uploads with `upload_fileobj` (an s3transfer body): it must work with our client
    (its Expect hook measures the body) and read back what it wrote, on the process's shared client."""
    resources = build_resources(make_settings(s3_bucket=bucket, executor="celery"))
    io_manager = resources["io_manager"]
    from image_pipeline.domain.objects.s3 import shared_s3_client

    assert io_manager.s3_resource.get_client() is shared_s3_client(s3_endpoint, "us-east-1")

    @dg.asset
    def numbers() -> dict:
        return {"chunks": [1, 2, 3]}

    @dg.asset
    def total(numbers: dict) -> int:
        return sum(numbers["chunks"])

    result = dg.materialize([numbers, total], resources={"io_manager": io_manager})
    assert result.success and result.output_for_node("total") == 6
    body = make_s3_client(s3_endpoint, "us-east-1").get_object(Bucket=bucket, Key="dagster-io/numbers")["Body"]
    assert pickle.loads(body.read()) == {"chunks": [1, 2, 3]}


def test_the_s3_io_manager_uses_imgpipe_s3_checksum(make_settings, bucket, s3_endpoint) -> None:
    """The IO manager's uploads (s3transfer's upload_fileobj) follow IMGPIPE_S3_CHECKSUM like the store's:
    a store that refuses boto3's default checksums would otherwise refuse only the chunk outputs. Fails
    on main before the setting existed (the IO manager's client always had boto3's default)."""
    from image_pipeline.domain.objects.s3 import shared_s3_client

    settings = make_settings(s3_bucket=bucket, executor="celery", s3_checksum="when_required")
    io_manager = build_resources(settings)["io_manager"]
    client = io_manager.s3_resource.get_client()
    assert client is shared_s3_client(s3_endpoint, "us-east-1", "when_required")
    assert client.meta.config.request_checksum_calculation == "when_required"
    assert client.meta.config.response_checksum_validation == "when_required"
    assert client is not shared_s3_client(s3_endpoint, "us-east-1")  # the default gets its own client

    @dg.asset
    def rows() -> list[int]:
        return [4, 5]

    assert dg.materialize([rows], resources={"io_manager": io_manager}).success
    body = client.get_object(Bucket=bucket, Key="dagster-io/rows")["Body"]
    assert pickle.loads(body.read()) == [4, 5]


def test_http_clients_share_one_certificate_checking_tls_context() -> None:
    import ssl

    ctx = default_tls_context()
    assert ctx is default_tls_context()
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname  # sharing weakens nothing
    assert ctx.cert_store_stats()["x509_ca"] > 0  # the CA bundle is loaded
    policy = FetchPolicy()
    one, two = make_client(policy), make_client(policy)
    assert one._transport._pool._ssl_context is ctx and two._transport._pool._ssl_context is ctx
