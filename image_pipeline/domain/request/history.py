"""What a key's user looks at: their recent requests, and one request's per-URL outcomes by product.

Reads only; the web page, the CLI and any client use these through the API.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from image_pipeline.domain.catalog.csv_input import CsvLimits, ProductRow, iter_csv_rows
from image_pipeline.domain.catalog.rows import RowsMissing, open_rows
from image_pipeline.domain.db.models import ImageRequest, ImageResult
from image_pipeline.domain.objects import ObjectNotFound, ObjectStore
from image_pipeline.domain.status import status_document


def recent_requests(session: Session, owner: str, limit: int = 20) -> Sequence[ImageRequest]:
    """The owner's newest requests first (indexed on owner; `seq` orders them)."""
    q = select(ImageRequest).where(ImageRequest.owner == owner).order_by(ImageRequest.seq.desc()).limit(limit)
    return session.scalars(q).all()


def results_between(session: Session, request_id: str, first: int, last: int) -> dict[int, ImageResult]:
    """Results with `first <= idx < last` (one page of a large request, on the primary key)."""
    q = select(ImageResult).where(
        ImageResult.request_id == request_id, ImageResult.idx >= first, ImageResult.idx < last
    )
    return {r.idx: r for r in session.scalars(q)}


def _renditions(r: ImageResult | None, to_url: Callable[[str], str]) -> list[dict] | None:
    """Every rendition of a profile's URL, with its public URL (None for the seed's one JPEG)."""
    if r is None or not r.renditions:
        return None
    return [{**{k: v for k, v in m.items() if k != "key"}, "url": to_url(m["key"])} for m in json.loads(r.renditions)]


def summary_document(req: ImageRequest, api_base_url: str) -> dict:
    """A request as the list shows it: its status document plus the file name and byte totals."""
    doc = status_document(req, api_base_url)
    doc.pop("owner", None)
    doc.update(filename=req.filename, bytes_in=req.bytes_in, bytes_out=req.bytes_out)
    return doc


def product_rows(store: ObjectStore, req: ImageRequest, limits: CsvLimits) -> Iterator[ProductRow]:
    """The request's products in input order: the rows the pipeline parsed (streamed), or (before it has)
    the stored input CSV parsed."""
    try:
        return open_rows(store, req.id)
    except RowsMissing:
        pass
    return _stored_input_rows(store, req.input_key, limits)


def _stored_input_rows(store: ObjectStore, key: str, limits: CsvLimits) -> Iterator[ProductRow]:
    """The stored upload's products, read and parsed only as far as the caller iterates (a page of a
    pending request costs its own rows, not a parse of the whole CSV on every call)."""
    try:
        yield from iter_csv_rows(store.iter_chunks(key), limits)
    except ObjectNotFound:
        return


def results_document(
    session: Session,
    store: ObjectStore,
    req: ImageRequest,
    *,
    api_base_url: str,
    limits: CsvLimits,
    offset: int = 0,
    limit: int = 100,
    public_url: Callable[[str], str] | None = None,
) -> dict:
    """Per-URL outcomes grouped by product (a page of products): status, error in words, bytes, output URL.

    URLs the pipeline has not reached yet are listed as `pending`.
    """
    rows = product_rows(store, req, limits)  # streamed: the page's rows are the only ones kept
    first = skipped = 0
    for row in itertools.islice(rows, offset):
        first += len(row.urls)
        skipped += 1
    page = list(itertools.islice(rows, limit))
    last = first + sum(len(r.urls) for r in page)
    results = results_between(session, req.id, first, last)
    to_url = public_url or store.public_url
    products, idx = [], first
    for row in page:
        images = []
        for url in row.urls:
            r = results.get(idx)
            images.append(
                {
                    "index": idx,
                    "url": url,
                    "status": r.status if r else "pending",
                    "error": r.error if r else None,
                    "failure_class": r.failure_class if r else None,
                    "bytes_in": r.bytes_in if r else None,
                    "bytes_out": r.bytes_out if r else None,
                    "kept_original": bool(r.kept_original) if r else False,
                    "output_url": to_url(r.output_key) if r and r.status == "done" and r.output_key else None,
                    "score": r.score if r else None,
                    "renditions": _renditions(r, to_url),
                }
            )
            idx += 1
        products.append({"row": row.row, "serial": row.serial, "name": row.name, "images": images})
    # The request's row count is the parse's own count (the API's and the pipeline's, the same function).
    total = req.row_count or (skipped + len(page) + sum(1 for _ in rows))
    doc = summary_document(req, api_base_url)
    doc.update(total_products=total, offset=offset, limit=limit, products=products)
    return doc
