"""The pipeline in the test process: accept a request as the API does, materialise its partition, read
back what was recorded."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import dagster as dg
from sqlalchemy import select
from sqlalchemy.orm import Session

from image_pipeline.defs.assets import request_assets
from image_pipeline.defs.partitions import request_partitions_def
from image_pipeline.domain.catalog.csv_input import ProductRow, parse_csv
from image_pipeline.domain.catalog.csv_output import write_output_csv
from image_pipeline.domain.db.engine import make_engine, session_factory
from image_pipeline.domain.db.models import ImageResult
from image_pipeline.domain.db.requests import get_request
from image_pipeline.domain.request.accept import Upload, accept, new_request_id
from image_pipeline.domain.services import make_store


def submit_to(
    settings, sessions, csv: bytes, webhook_url: str | None = None, owner: str = "key_test", profile=None
) -> str:
    """Accept a request the way the API does (`domain.request.accept`): store the CSV, then record the row."""
    parsed = parse_csv(csv)
    rid = new_request_id()
    upload = Upload(
        owner, csv, len(parsed.rows), parsed.url_count, filename="t.csv", webhook_url=webhook_url,
        profile=profile.canonical_json() if profile is not None else None,
    )  # fmt: skip
    with sessions() as s:
        accept(make_store(settings), s, rid, upload)
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


def results_for(session: Session, request_id: str) -> list[ImageResult]:
    """Every recorded result of a request, in index order."""
    q = select(ImageResult).where(ImageResult.request_id == request_id).order_by(ImageResult.idx)
    return list(session.scalars(q).all())


def rendered_output_csv(rows: Iterable[ProductRow], output_url: Callable[[int], str | None]) -> bytes:
    """The whole output CSV in memory, written by the pipeline's own streamed writer."""
    out = bytearray()
    write_output_csv(rows, output_url, out.extend)
    return bytes(out)
