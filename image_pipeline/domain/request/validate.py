"""Step 1 of a request's run: parse the stored upload with the API's own rules and store its rows."""

from __future__ import annotations

from dataclasses import dataclass

from image_pipeline.domain.catalog.csv_input import ProductRow, parse_csv
from image_pipeline.domain.catalog.rows import write_row
from image_pipeline.domain.db import requests as repo
from image_pipeline.domain.keys import input_key, rows_key
from image_pipeline.domain.objects import ObjectNotFound
from image_pipeline.domain.request.context import RequestContext, RequestFailed


@dataclass(frozen=True)
class Validated:
    """What `validate_request` found: counts and the first rows (the asset's preview), not every row."""

    rows: int
    urls: int
    preview: list[ProductRow]


PREVIEW_ROWS = 10


def validate_request(ctx: RequestContext, request_id: str) -> Validated:
    """Parse the stored input CSV with the API's own rules, store the rows (JSON lines, streamed to storage
    as they are parsed: a refused file leaves none), mark the request processing (a request that already
    has a final status keeps it: this run is a re-run, opened first, whose end sends `request.updated`)."""
    ctx.stop_if_canceled(request_id)  # canceled while its run was queued: nothing to do
    with ctx.sessions() as s:
        repo.open_rerun(s, request_id)
    try:
        data = ctx.store.get(input_key(request_id))
    except ObjectNotFound as exc:
        raise RequestFailed(f"input CSV of request {request_id} is missing from storage") from exc
    preview: list[ProductRow] = []

    with ctx.store.open_writer(rows_key(request_id), "application/x-ndjson") as out:

        def keep(row: ProductRow) -> None:
            write_row(out, row)
            if len(preview) < PREVIEW_ROWS:
                preview.append(row)

        parsed = parse_csv(data, ctx.limits, on_row=keep)
        del data
        if not parsed.ok:
            first = parsed.errors[0]
            raise RequestFailed(f"input CSV is invalid: row {first.row}, {first.column}: {first.message}")
    with ctx.sessions() as s:
        if repo.get_request(s, request_id) is None:
            raise RequestFailed(f"request {request_id} is not in the database")
        repo.mark_processing(s, request_id, row_count=parsed.row_count, url_count=parsed.url_count)
        ctx.publish_status(s, request_id)
    return Validated(parsed.row_count, parsed.url_count, preview)
