import csv
import io

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
