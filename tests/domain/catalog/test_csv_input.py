import pytest

from image_pipeline.domain.catalog.csv_input import CsvLimits, parse_csv, split_urls
from tests.support.inputs import ACCEPTED, PEERS, REFUSED, SHARED_PEERS

HEADER = "S.No.,Product Name,Input Image Urls\n"


def test_quoted_url_list_keeps_order() -> None:
    r = parse_csv(
        (HEADER + '1,Shoe,"https://a.example/1.jpg, https://a.example/2.jpg,https://b.example/3.jpg"\n').encode()
    )
    assert r.ok and r.rows[0].urls == ("https://a.example/1.jpg", "https://a.example/2.jpg", "https://b.example/3.jpg")
    assert r.rows[0].row == 2


@pytest.mark.parametrize("prefix,newline", [(b"", b"\n"), (b"\xef\xbb\xbf", b"\n"), (b"\xef\xbb\xbf", b"\r\n")])
def test_bom_and_line_endings(prefix: bytes, newline: bytes) -> None:
    body = (
        HEADER.encode().replace(b"\n", newline)
        + b"1,A,https://x.example/a.jpg"
        + newline
        + b"2,B,https://x.example/b.jpg"
    )
    r = parse_csv(prefix + body)
    assert r.ok, r.errors
    assert [row.serial for row in r.rows] == ["1", "2"]


def test_every_problem_is_reported_with_row_and_column() -> None:
    text = (
        HEADER + "1,A,https://x.example/a.jpg\n1,B,https://x.example/b.jpg\n,C,https://x.example/c.jpg\n"
        "4,,ftp://x.example/d.jpg\n5,E,\n6,F,/relative.jpg\n"
    )
    r = parse_csv(text.encode())
    got = {(e.row, e.column) for e in r.errors}
    assert got == {
        (3, "S.No."),
        (4, "S.No."),
        (5, "Product Name"),
        (5, "Input Image Urls"),
        (6, "Input Image Urls"),
        (7, "Input Image Urls"),
    }
    assert not r.rows


def test_header_problems() -> None:
    r = parse_csv(b"S.No.,Product Name\n1,A\n")
    assert [(e.row, e.column) for e in r.errors] == [(1, "Input Image Urls")]
    r = parse_csv(b"S.No.,Product Name,Input Image Urls,Colour\n1,A,https://x.example/a.jpg,red\n")
    assert [(e.row, e.column) for e in r.errors] == [(1, "Colour")]


def test_header_only_empty_and_binary() -> None:
    assert parse_csv(HEADER.encode()).errors[0].message.startswith("no products")
    assert parse_csv(b"").errors[0].message == "file is empty"
    binary = parse_csv(b"\x89PNG\r\n\x1a\n\x00\x00\x00")
    assert binary.kind == "encoding" and "binary" in binary.errors[0].message


def test_non_utf8_is_refused_with_the_line() -> None:
    r = parse_csv((HEADER + "1,Caf\xe9,https://x.example/a.jpg\n").encode("latin-1"))
    assert r.kind == "encoding" and r.errors[0].row == 2 and "UTF-8" in r.errors[0].message


def test_quoted_newline_and_comma_in_name() -> None:
    r = parse_csv((HEADER + '1,"Shoe, red\nsize 9",https://x.example/a.jpg\n').encode())
    assert r.ok and r.rows[0].name == "Shoe, red size 9"  # a line break in a name is layout: one space


def test_limits() -> None:
    limits = CsvLimits(max_rows=2, max_urls_per_row=2)
    r = parse_csv((HEADER + "".join(f"{i},P,https://x.example/{i}.jpg\n" for i in range(5))).encode(), limits)
    assert r.kind == "too_many_rows" and r.errors[0].row == 4
    r = parse_csv(
        (HEADER + '1,P,"https://x.example/1.jpg,https://x.example/2.jpg,https://x.example/3.jpg"\n').encode(), limits
    )
    assert r.errors[0].column == "Input Image Urls" and "at most 2" in r.errors[0].message


def test_errors_are_capped() -> None:
    r = parse_csv((HEADER + "".join(f"{i},P,nope\n" for i in range(500))).encode(), CsvLimits(max_errors=10))
    assert len(r.errors) == 10 and r.truncated


def test_split_urls_keeps_commas_inside_urls() -> None:
    assert split_urls("https://x.example/a,b.jpg, https://y.example/c.jpg ,") == [
        "https://x.example/a,b.jpg",
        "https://y.example/c.jpg",
    ]


# Each real-world file from other implementations (tests.support.inputs): accepted, or refused with a clear message.
@pytest.mark.parametrize("name,rows", sorted(ACCEPTED.items()))
def test_peer_fixture_accepted(name: str, rows: int) -> None:
    r = parse_csv((PEERS / name).read_bytes())
    assert r.ok, r.errors
    assert len(r.rows) == rows
    assert all(u.startswith("https://") for row in r.rows for u in row.urls)


def test_peer_fixture_details() -> None:
    r = parse_csv((PEERS / "kumarsatwik-unquoted.csv").read_bytes())
    assert r.rows[0].urls == (
        "https://images.pexels.com/photos/3945683/pexels-photo-3945683.jpeg",
        "https://images.pexels.com/photos/3945684/pexels-photo-3945684.jpeg",
    )
    r = parse_csv((PEERS / "stoneraptor5870-input-no-final-newline.csv").read_bytes())
    assert [len(row.urls) for row in r.rows] == [3, 2, 4]
    r = parse_csv((PEERS / "shimbhu77-querystrings.csv").read_bytes())
    assert r.rows[0].urls[0].endswith("%3D%3D") and len(r.rows[0].urls) == 2


@pytest.mark.parametrize("name,message", sorted(REFUSED.items()))
def test_peer_fixture_refused(name: str, message: str) -> None:
    r = parse_csv((PEERS / name).read_bytes())
    assert not r.ok and r.errors[0].row == 1 and message in r.errors[0].message


def test_every_fixture_is_classified() -> None:
    assert {p.name for p in PEERS.glob("*.csv")} == set(ACCEPTED) | set(REFUSED)


def test_fixture_copy_matches_the_shared_set() -> None:
    """Where the shared fixture folder sits next to the checkout, the copy here holds exactly its files."""
    if SHARED_PEERS.is_dir():
        shared = {p.name: p.read_bytes() for p in SHARED_PEERS.iterdir() if p.is_file()}
        assert {p.name: p.read_bytes() for p in PEERS.iterdir() if p.is_file()} == shared
    assert {p.name for p in PEERS.glob("*.csv")}  # and the copy is never empty


# Issue 15 item 14: dialects seen in the wild whose meaning is unambiguous.
@pytest.mark.parametrize(
    "text",
    [
        # a space after each delimiter, before a quoted cell (failed before: "not an absolute http(s) URL")
        'S.No., Product Name, Input Image Urls\n1, SKU1, "https://a.example/1.jpg,https://a.example/2.jpg"\n',
        # several spaces, and ", " inside the quoted cell
        'S.No.,  Product Name,  Input Image Urls\n1,  SKU1,   "https://a.example/1.jpg, https://a.example/2.jpg"\n',
        # a quoted name after a space too (failed before: the name kept its quotes, the URLs split)
        'S.No.,Product Name,Input Image Urls\n1, "SKU1", "https://a.example/1.jpg,https://a.example/2.jpg"\n',
        # ;-separated, as spreadsheets in ;-separator locales save CSV (failed before: "missing header row")
        "S.No.;Product Name;Input Image Urls\n1;SKU1;https://a.example/1.jpg,https://a.example/2.jpg\n",
        'S.No.; Product Name; Input Image Urls\r\n1; "SKU1"; "https://a.example/1.jpg, https://a.example/2.jpg"\r\n',
        # tab-separated, saved with a .csv name
        "S.No.\tProduct Name\tInput Image Urls\n1\tSKU1\thttps://a.example/1.jpg, https://a.example/2.jpg\n",
    ],
    ids=["space-quoted", "spaces", "space-quoted-name", "semicolon", "semicolon-space-quoted", "tab"],
)
def test_sibling_dialects_are_one_product_with_two_urls(text: str) -> None:
    """Fails before the fix (each id says how): a space after the delimiter made the quote literal."""
    r = parse_csv(text.encode())
    assert r.ok, r.errors
    [row] = r.rows
    assert (row.serial, row.name, row.urls) == ("1", "SKU1", ("https://a.example/1.jpg", "https://a.example/2.jpg"))


def test_semicolon_file_still_refuses_a_bad_cell_by_row_and_column() -> None:
    r = parse_csv(b"S.No.;Product Name;Input Image Urls\n1;A;https://a.example/1.jpg\n2;;ftp://x\n")
    assert [(e.row, e.column) for e in r.errors] == [(3, "Product Name"), (3, "Input Image Urls")]


# Issue 15 item 5: control characters in names and serials are removed (layout) or refused (the rest).
@pytest.mark.parametrize(
    "cell,column,char",
    [
        ('999,"\x00=1+1",https://x.example/a.jpg', "Product Name", "U+0000"),
        ('"\x00=1",A,https://x.example/a.jpg', "S.No.", "U+0000"),
        ("999,Shoe\x1b[31m,https://x.example/a.jpg", "Product Name", "U+001B"),
        ("999,Shoe\x7f,https://x.example/a.jpg", "Product Name", "U+007F"),
        ("999,Shoe\x9b,https://x.example/a.jpg", "Product Name", "U+009B"),
        ("999,Sh\u202eeo,https://x.example/a.jpg", "Product Name", "U+202E"),
    ],
    ids=["nul-name", "nul-serial", "esc", "del", "c1", "bidi-override"],
)
def test_control_characters_in_names_and_serials_are_refused(cell: str, column: str, char: str) -> None:
    """Fails before the fix: each was accepted (a NUL past the first 8 KB was not even seen)."""
    # past the first 8 KB, where a NUL no longer makes the whole file "binary"
    rows = "".join(f"{i},P{i},https://x.example/{i}.jpg\n" for i in range(1, 400))
    r = parse_csv((HEADER + rows + cell + "\n").encode())
    assert [(e.row, e.column) for e in r.errors] == [(401, column)] and char in r.errors[0].message


def test_a_nul_led_formula_after_the_first_8_kb_is_refused() -> None:
    """Fails before the fix: the NUL check looked at the first 8192 bytes only."""
    rows = "".join(f"{i},P{i},https://x.example/{i}.jpg\n" for i in range(1, 400))
    assert len(rows) > 8192
    r = parse_csv((HEADER + rows + '400,"\x00=HYPERLINK(""http://evil"")",https://x.example/z.jpg\n').encode())
    assert [(e.row, e.column) for e in r.errors] == [(401, "Product Name")]


def test_layout_characters_in_names_become_single_spaces() -> None:
    r = parse_csv((HEADER + '1,"Shoe\r\n\tred\u2028size 9",https://x.example/a.jpg\n').encode())
    assert r.ok and r.rows[0].name == "Shoe red size 9"


@pytest.mark.parametrize(
    "url", ["https://x.example/a\x7f.jpg", "https://x.example/a\x9b.jpg", "https://x.example/\u202e"]
)
def test_control_characters_in_urls_are_refused(url: str) -> None:
    """Fails before the fix: only characters below U+0020 were refused."""
    r = parse_csv((HEADER + f"1,A,{url}\n").encode())
    assert [(e.row, e.column) for e in r.errors] == [(2, "Input Image Urls")]


@pytest.mark.parametrize("chunk", [1, 2, 7, 4096])
def test_lazy_rows_are_the_parse_rows_whatever_the_chunking(chunk: int) -> None:
    """`iter_csv_rows` (the results page of a pending request) reads exactly what `parse_csv` accepted."""
    from image_pipeline.domain.catalog.csv_input import iter_csv_rows

    files = [(PEERS / name).read_bytes() for name in sorted(ACCEPTED)]
    files.append(
        '\ufeffS.No.;Product Name;Input Image Urls\r\n1;"a\r\nb";https://x.example/a\r\n2;c;https://x.example/b'.encode()
    )
    for data in files:
        chunks = (data[i : i + chunk] for i in range(0, len(data), chunk))
        assert list(iter_csv_rows(chunks)) == parse_csv(data).rows
