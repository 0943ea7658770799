"""The output CSV: the input columns plus `Output Image Urls`, one output per input URL, same order.

A URL that failed leaves its slot empty, so positions still line up with the inputs. Cells are
neutralised against spreadsheet formula injection as OWASP recommends.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable

from image_pipeline.csv_input import COLUMNS, OUTPUT_URLS, ProductRow

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise(cell: str) -> str:
    """Prefix a cell a spreadsheet would treat as a formula with `'` (OWASP CSV injection)."""
    return "'" + cell if cell.startswith(_FORMULA_START) else cell


def render_output_csv(rows: Iterable[ProductRow], output_url: Callable[[int], str | None]) -> bytes:
    """`output_url(idx)` gives the public URL of input URL number `idx`, or None if it failed."""
    # Encoded as it is written: one growing byte buffer, not a str of the whole file plus its encoding.
    buf = io.BytesIO()
    text = io.TextIOWrapper(buf, encoding="utf-8", newline="", write_through=True)
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerow([*COLUMNS, OUTPUT_URLS])
    idx = 0
    for row in rows:
        outs = []
        for _ in row.urls:
            outs.append(output_url(idx) or "")
            idx += 1
        writer.writerow([neutralise(row.serial), neutralise(row.name), ", ".join(row.urls), ", ".join(outs)])
    text.flush()
    text.detach()  # leaves `buf` open
    return buf.getvalue()
