"""The pipeline in the test process: accept a request as the API does, materialise its partition, read
back what was recorded."""

from __future__ import annotations

import uuid

import dagster as dg

from image_pipeline.defs.assets import request_assets
from image_pipeline.defs.partitions import request_partitions_def
from image_pipeline.domain.db.engine import make_engine, session_factory
from image_pipeline.domain.db.requests import create_request, get_request, results_for
from image_pipeline.domain.keys import input_key
from image_pipeline.domain.services import make_store


def submit_to(settings, sessions, csv: bytes, webhook_url: str | None = None, owner: str = "key_test") -> str:
    """Accept a request the way the API does: store the CSV object, then record the row."""
    from image_pipeline.domain.catalog.csv_input import parse_csv

    parsed = parse_csv(csv)
    rid = str(uuid.uuid4())
    make_store(settings).put(input_key(rid), csv)
    with sessions() as s:
        create_request(
            s,
            request_id=rid,
            owner=owner,
            input_key=input_key(rid),
            webhook_url=webhook_url,
            filename="t.csv",
            row_count=len(parsed.rows),
            url_count=parsed.url_count,
        )
    return rid


def run_partition(rid: str, resources: dict, instance: dg.DagsterInstance, raise_on_error: bool = True):
    instance.add_dynamic_partitions(request_partitions_def.name, [rid])
    return dg.materialize(
        request_assets, partition_key=rid, resources=resources, instance=instance, raise_on_error=raise_on_error
    )


def db_request(settings, rid: str):
    engine = make_engine(settings.resolved_database_url)
    with session_factory(engine)() as s:
        req, results = get_request(s, rid), results_for(s, rid)
    engine.dispose()
    return req, results
