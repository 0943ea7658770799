"""A request's parsed rows in object storage: JSON lines, written and read as a stream.

`validate_request` writes one line per product as the CSV is parsed; every later reader (the chunk plan,
the output CSV, the webhook event, the results page) iterates them in input order without ever holding
the request's rows at once. Requests stored before this format keep a single JSON array under
`rows.json`, which is still read (whole: those are the requests that were already held whole).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from image_pipeline.domain.catalog.csv_input import ProductRow
from image_pipeline.domain.keys import legacy_rows_key, rows_key
from image_pipeline.domain.objects import ObjectNotFound, ObjectStore, ObjectWriter


class RowsMissing(Exception):
    """The request has no stored rows (it failed before its CSV was parsed, or they were purged)."""


def write_row(writer: ObjectWriter, row: ProductRow) -> None:
    writer.write(json.dumps(row.as_dict(), separators=(",", ":")).encode() + b"\n")


def iter_lines(store: ObjectStore, key: str) -> Iterator[bytes]:
    """The lines of an object, read in chunks (the object is never held whole)."""
    rest = b""
    for chunk in store.iter_chunks(key):
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        yield from lines
    if rest:
        yield rest


def open_rows(store: ObjectStore, request_id: str) -> Iterator[ProductRow]:
    """Every parsed row of a request, in input order, read lazily; `RowsMissing` (raised here, not at the
    first row) when none are stored."""
    key = rows_key(request_id)
    if store.exists(key):
        return (ProductRow.from_dict(json.loads(line)) for line in iter_lines(store, key) if line)
    try:
        legacy = store.get(legacy_rows_key(request_id))
    except ObjectNotFound as exc:
        raise RowsMissing(request_id) from exc
    return (ProductRow.from_dict(d) for d in json.loads(legacy))
