"""The output CSV: the input columns plus `Output Image Urls`, one output per input URL, same order.

A URL that failed leaves its slot empty, so positions still line up with the inputs. Cells are
neutralised against spreadsheet formula injection as OWASP recommends.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable

from image_pipeline.domain.catalog.csv_input import COLUMNS, OUTPUT_URLS, ProductRow

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise(cell: str) -> str:
    """Prefix a cell a spreadsheet would treat as a formula with `'` (OWASP CSV injection)."""
    return "'" + cell if cell.startswith(_FORMULA_START) else cell


def write_output_csv(
    rows: Iterable[ProductRow],
    output_url: Callable[[int], str | None],
    write: Callable[[bytes], object],
    flush_chars: int = 1 << 16,
) -> None:
    """Write the output CSV to `write` (e.g. an object store's streaming writer) as it is produced: rows
    are taken one at a time and handed on in UTF-8 pieces of about `flush_chars`, so memory does not
    grow with the request. `output_url(idx)` gives the public URL of input URL number `idx`, or None if
    it failed; it is asked once per URL, in input order."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerow([*COLUMNS, OUTPUT_URLS])
    idx = 0
    for row in rows:
        outs = []
        for _ in row.urls:
            outs.append(output_url(idx) or "")
            idx += 1
        writer.writerow([neutralise(row.serial), neutralise(row.name), ", ".join(row.urls), ", ".join(outs)])
        if text.tell() >= flush_chars:
            write(text.getvalue().encode())
            text.seek(0)
            text.truncate()
    if text.tell():
        write(text.getvalue().encode())
