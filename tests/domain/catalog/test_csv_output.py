import csv
import io

import pytest

from image_pipeline.domain.catalog.csv_input import ProductRow
from image_pipeline.domain.catalog.csv_output import neutralise
from tests.support.pipeline import rendered_output_csv


def test_output_keeps_order_and_leaves_failed_slots_empty() -> None:
    rows = [ProductRow(2, "1", "A", ("https://x/a", "https://x/b")), ProductRow(3, "2", "B", ("https://x/c",))]
    outs = {0: "https://cdn/0.jpg", 2: "https://cdn/2.jpg"}
    data = rendered_output_csv(rows, outs.get)
    parsed = list(csv.reader(io.StringIO(data.decode())))
    assert parsed[0] == ["S.No.", "Product Name", "Input Image Urls", "Output Image Urls"]
    assert parsed[1] == ["1", "A", "https://x/a, https://x/b", "https://cdn/0.jpg, "]
    assert parsed[2] == ["2", "B", "https://x/c", "https://cdn/2.jpg"]


def test_formula_cells_are_neutralised() -> None:
    for bad in ('=HYPERLINK("http://evil")', "+1", "-2+3", "@SUM(A1)", "\tx", "\rx"):
        assert neutralise(bad) == "'" + bad
    assert neutralise("SKU-1") == "SKU-1"
    data = rendered_output_csv([ProductRow(2, "=1+1", "=cmd|' /C calc'!A0", ("https://x/a",))], lambda i: None)
    row = list(csv.reader(io.StringIO(data.decode())))[1]
    assert row[0] == "'=1+1" and row[1].startswith("'=")


# Issue 15 item 5: every output cell is safe in every spreadsheet locale.
TRIGGERS = "=+-@\uff1d\uff0b\uff0d\uff20"
SKIPPED = ' \t\r\n"' + "".join(map(chr, range(32))) + "\x7f"


def spreadsheet_cells(data: str, delimiters: str) -> list[str]:
    """How a spreadsheet splits a CSV into cells with these delimiters (Excel/LibreOffice rules): a quote
    opens a quoted field only at the start of a field; `""` inside is a quote; after the closing quote,
    characters are taken literally up to the next delimiter. Rows end at a line break outside quotes."""
    cells, cell, i, at_start, quoted = [], [], 0, True, False
    while i < len(data):
        ch = data[i]
        if quoted:
            if ch == '"' and data[i + 1 : i + 2] == '"':
                cell.append('"')
                i += 1
            elif ch == '"':
                quoted = False
            else:
                cell.append(ch)
        elif at_start and ch == '"':
            quoted, at_start = True, False
        elif ch in delimiters or ch in "\r\n":
            cells.append("".join(cell))
            cell, at_start = [], True
        else:
            cell.append(ch)
            at_start = False
        i += 1
    cells.append("".join(cell))
    return cells


HOSTILE_TEXT = [
    'Shoe;=HYPERLINK("http://evil","x")',
    "=1+1",
    "\x00=1+1",
    "a,=1",
    'a;"=1"',
    "x\n=1",
    "x\r\n+1",
    "x\t@SUM(A1)",
    '"=1"',
    " -2",
    "a;;+1",
    "a; ; \t=1",
    "\uff1d1+1",
    "a;\x00@x",
]
HOSTILE_URLS = ["https://example.com/a.jpg;=1+1", 'https://x.example/a;"=1', "https://x.example/a;-1;@2;+3"]


@pytest.mark.parametrize("delimiters", [",", ";", "\t", ",;", ",;\t"], ids=["comma", "semicolon", "tab", "both", "all"])
def test_no_cell_is_a_formula_in_any_locale(delimiters: str) -> None:
    """Fails before the fix: `;` was never considered (`Shoe;=HYPERLINK` is a formula cell in a `;`
    locale), the URL column was not neutralised at all, and a line break or tab inside a name started a
    formula cell for a parser that does not honour the quote."""
    rows = [ProductRow(i + 2, s, s, tuple(HOSTILE_URLS)) for i, s in enumerate(HOSTILE_TEXT)]
    data = rendered_output_csv(rows, lambda i: f"https://cdn.example/{i}.jpg").decode()
    for cell in spreadsheet_cells(data, delimiters):
        assert cell.lstrip(SKIPPED)[:1] not in set(TRIGGERS) or cell.lstrip(SKIPPED) == "", (delimiters, cell)
    # and the file still reads back, as CSV, to what was written (names neutralised, URLs still URLs)
    parsed = list(csv.reader(io.StringIO(data)))[1:]
    assert [p[1] for p in parsed] == [neutralise(s) for s in HOSTILE_TEXT]
    assert parsed[0][2].split(", ") == [
        "https://example.com/a.jpg;%3D1+1",
        "https://x.example/a;%22=1",
        "https://x.example/a;%2D1;%402;%2B3",
    ]


def test_a_cell_with_a_semicolon_is_quoted() -> None:
    """Fails before the fix: `;` is no delimiter for csv.writer, so the cell was written bare."""
    data = rendered_output_csv([ProductRow(2, "1", "Shoe;blue", ("https://x/a",))], lambda i: None).decode()
    assert '"Shoe;blue"' in data
