"""The output CSV: the input columns plus `Output Image Urls`, one output per input URL, same order.

A URL that failed leaves its slot empty, so positions still line up with the inputs. Every cell is
neutralised against spreadsheet formula injection (OWASP), and not only where a `,`-separator
spreadsheet starts a cell: one in a `;`-separator locale (most of Europe) reads this file split at
`;` (and at tabs and line breaks), so a cell starts there too. And a cell holding a `;` is quoted, so
an import that splits at both `,` and `;` keeps it whole.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterable, Sequence

from image_pipeline.domain.catalog.csv_input import COLUMNS, OUTPUT_URLS, ProductRow

SYNC_STATUS = "Sync Status"

# What makes a spreadsheet read a cell as a formula (fullwidth forms too: some IMEs' spreadsheets map them).
_TRIGGER = "=+\\-@\uff1d\uff0b\uff0d\uff20"
# Spreadsheets skip blanks, quotes and control characters (a NUL-led `\x00=1+1` is a formula) before looking.
_SKIPPED = '\\s"\\x00-\\x1f\\x7f'
# Where some spreadsheet locale starts a new cell (or row) inside what this file writes as one cell.
_BREAKS = ";\\t\\r\\n"
_STARTS_FORMULA = re.compile(f"[\\t\\r\\n]|[{_SKIPPED}]*[{_TRIGGER}]")
_FORMULA_AFTER_BREAK = re.compile(f"([{_BREAKS}])(?=[{_SKIPPED}]*[{_TRIGGER}])")
_URL_FORMULA_AFTER_BREAK = re.compile(f";([{_TRIGGER}])")
_NEEDS_QUOTES = re.compile(f'[,"{_BREAKS}]|^\\s|\\s$')


def neutralise(cell: str) -> str:
    """A text cell no spreadsheet reads as a formula, in any locale: `'` before the cell when it starts
    like one, and after each `;`/tab/line break followed by one (`Shoe;=HYPERLINK(...)` ->
    `Shoe;'=HYPERLINK(...)`)."""
    cell = _FORMULA_AFTER_BREAK.sub(r"\1'", cell)
    return "'" + cell if _STARTS_FORMULA.match(cell) else cell


def neutralise_urls(cell: str) -> str:
    """A cell of URLs, made safe the same way but kept usable as URLs: the formula character after a `;`
    is percent-encoded (`a.jpg;=1+1` -> `a.jpg;%3D1+1`, the same resource), and so is a quote."""
    cell = cell.replace('"', "%22")
    cell = _URL_FORMULA_AFTER_BREAK.sub(lambda m: ";" + "".join(f"%{b:02X}" for b in m[1].encode()), cell)
    return neutralise(cell)


def _field(cell: str) -> str:
    """One CSV field: quoted when it holds a delimiter of any locale, a quote, a line break or edge blanks."""
    return '"' + cell.replace('"', '""') + '"' if _NEEDS_QUOTES.search(cell) else cell


def _line(cells: Iterable[str]) -> str:
    return ",".join(_field(c) for c in cells) + "\r\n"


def write_output_csv(
    rows: Iterable[ProductRow],
    output_url: Callable[[int], str | None],
    write: Callable[[bytes], object],
    flush_chars: int = 1 << 16,
    renditions: Sequence[str] = (),
    rendition_urls: Callable[[int], Sequence[str | None]] | None = None,
    sync_status: Callable[[int], str | None] | None = None,
) -> None:
    """Write the output CSV to `write` (e.g. an object store's streaming writer) as it is produced: rows
    are taken one at a time and handed on in UTF-8 pieces of about `flush_chars`, so memory does not
    grow with the request. `output_url(idx)` gives the public URL of input URL number `idx`, or None if
    it failed; it is asked once per URL, in input order. A profile's further `renditions` (names) add a
    column `Output Image Urls (<name>)` each, filled from `rendition_urls(idx)` (asked right after
    `output_url(idx)`), URLs in the same order as the first column's. `sync_status(idx)` (the sync
    memory's `new`, `changed` or `unchanged`, asked last for each URL) adds a last column `Sync Status`,
    one word per input URL in the same order (empty where the URL failed)."""
    text = io.StringIO()
    head = [*COLUMNS, OUTPUT_URLS, *(f"{OUTPUT_URLS} ({name})" for name in renditions)]
    text.write(_line([*head, SYNC_STATUS] if sync_status is not None else head))
    idx = 0
    for row in rows:
        outs: list[str] = []
        more: list[list[str]] = [[] for _ in renditions]
        states: list[str] = []
        for _ in row.urls:
            outs.append(output_url(idx) or "")
            if renditions and rendition_urls is not None:
                for column, url in zip(more, rendition_urls(idx), strict=True):
                    column.append(url or "")
            if sync_status is not None:
                states.append(sync_status(idx) or "")
            idx += 1
        text.write(
            _line(
                [
                    neutralise(row.serial),
                    neutralise(row.name),
                    neutralise_urls(", ".join(row.urls)),
                    neutralise_urls(", ".join(outs)),
                    *(neutralise_urls(", ".join(column)) for column in more),
                    *([", ".join(states)] if sync_status is not None else []),
                ]
            )
        )
        if text.tell() >= flush_chars:
            write(text.getvalue().encode())
            text.seek(0)
            text.truncate()
    if text.tell():
        write(text.getvalue().encode())
