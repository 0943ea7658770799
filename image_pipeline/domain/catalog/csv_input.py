"""The input CSV contract: parse and validate a whole upload, reporting every problem by row and column.

One truth for what is accepted: the API validates uploads with `parse_csv` and the `validated_csv`
asset parses the stored object with the very same function.

Accepted: header ``S.No.,Product Name,Input Image Urls`` (also spelled ``S. No.``, ``Serial Number``,
``Sr No``...), UTF-8 with or without BOM, CRLF or LF, with or without a final newline. The URL cell
holds one or more absolute http(s) URLs separated by commas (quoted, as the format asks). Files
written by tools that forgot to quote that cell, so the URLs spill into extra unnamed columns, are
accepted too: every spilled cell must itself be a URL. A space after a delimiter (also before a quoted
cell) is ignored, and `;`- or tab-separated files (what spreadsheets in `;`-separator locales save) are
read with their own delimiter (`dialect_of`). Anything else is refused with the row and column named.
"""

from __future__ import annotations

import codecs
import csv
import ipaddress
import itertools
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from image_pipeline.domain.settings import Settings

SERIAL, NAME, URLS = "S.No.", "Product Name", "Input Image Urls"
COLUMNS = (SERIAL, NAME, URLS)
OUTPUT_URLS = "Output Image Urls"

# Header spellings seen in the wild, compared after dropping case, spaces, dots and underscores.
_ALIASES = {
    SERIAL: {"sno", "srno", "serialno", "serialnumber", "serial", "no", "number", "id"},
    NAME: {"productname", "product", "name"},
    URLS: {"inputimageurls", "inputimageurl", "imageurls", "imageurl", "urls", "inputurls"},
}
# Split only where a comma (or whitespace) is followed by a new scheme, so commas inside a URL survive.
_LINES = re.compile(r"[^\r\n]*(?:\r\n?|\n)|[^\r\n]+")
_URL_SPLIT = re.compile(r"(?:\s*,\s*|\s+)(?=[A-Za-z][A-Za-z0-9+.\-]*://)")


# Line breaks and tabs inside a name or serial are layout, not data: each run becomes one space. Every
# other control character (NUL, ESC, DEL, C1) and the bidi embeddings/overrides/isolates, which reorder
# what a spreadsheet or terminal shows, are refused with the row and column.
_LAYOUT = re.compile(r"[\t\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]+")
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")


def control_character(text: str) -> str | None:
    """The first control (or bidi control) character of `text`, or None."""
    return next((c for c in text if c in _BIDI or unicodedata.category(c) == "Cc"), None)


def clean_text(cell: str) -> str:
    """A name or serial as stored: line breaks and tabs become single spaces, surrounding blanks dropped."""
    return _LAYOUT.sub(" ", cell).strip()


def _norm_header(cell: str) -> str:
    return re.sub(r"[\s._\-]+", "", cell.strip().lower())


@dataclass(frozen=True)
class CsvError:
    """One problem: `row` is the 1-based line of the file (the header is row 1); 0 = the whole file."""

    row: int
    column: str | None
    message: str

    def as_dict(self) -> dict:
        return {"row": self.row, "column": self.column, "message": self.message}


@dataclass(frozen=True)
class ProductRow:
    """One product of the request, in input order."""

    row: int  # 1-based line number in the file (header = 1)
    serial: str
    name: str
    urls: tuple[str, ...]

    def as_dict(self) -> dict:
        return {"row": self.row, "serial": self.serial, "name": self.name, "urls": list(self.urls)}

    @classmethod
    def from_dict(cls, d: dict) -> ProductRow:
        return cls(row=d["row"], serial=d["serial"], name=d["name"], urls=tuple(d["urls"]))


@dataclass(frozen=True)
class CsvLimits:
    max_rows: int = 10_000
    max_urls_per_row: int = 50
    max_cell_chars: int = 20_000
    max_url_chars: int = 2048
    max_errors: int = 100

    @classmethod
    def from_settings(cls, s: Settings) -> CsvLimits:
        """The same limits for the API's check and the pipeline's re-parse (one source: `Settings`)."""
        return cls(
            max_rows=s.max_rows,
            max_urls_per_row=s.max_urls_per_row,
            max_cell_chars=s.max_cell_chars,
            max_url_chars=s.max_url_chars,
            max_errors=s.max_reported_errors,
        )


@dataclass
class CsvParseResult:
    rows: list[ProductRow] = field(default_factory=list)  # empty when parsed with `on_row` (or refused)
    errors: list[CsvError] = field(default_factory=list)
    kind: str = "invalid"  # which HTTP family the refusal belongs to: "encoding" | "invalid" | "too_many_rows"
    truncated: bool = False  # more errors existed than were kept
    row_count: int = 0  # valid products seen (also when they went to `on_row` instead of `rows`)
    url_count: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors


class _Collector:
    def __init__(self, result: CsvParseResult, cap: int) -> None:
        self.result, self.cap = result, cap

    def add(self, row: int, column: str | None, message: str) -> None:
        if len(self.result.errors) < self.cap:
            self.result.errors.append(CsvError(row, column, message))
        else:
            self.result.truncated = True


def decode_csv_bytes(data: bytes) -> tuple[str | None, CsvError | None]:
    """Decode an upload as UTF-8 (BOM allowed). Returns (text, None) or (None, error)."""
    for bom, name in (
        (b"\xff\xfe\x00\x00", "UTF-32"),
        (b"\x00\x00\xfe\xff", "UTF-32"),
        (b"\xff\xfe", "UTF-16"),
        (b"\xfe\xff", "UTF-16"),
    ):
        if data.startswith(bom):  # Excel's "Unicode text": a text file, just not in the encoding we take
            return None, CsvError(0, None, f"file is {name} text; save it as CSV UTF-8")
    if b"\x00" in data[:8192]:
        return None, CsvError(0, None, "file is binary, not a CSV text file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        return None, CsvError(
            line,
            None,
            f"file is not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}); save it as UTF-8",
        )
    return text, None


def split_urls(cell: str) -> list[str]:
    """The URLs of one cell, in order: comma- (or whitespace-) separated, surrounding blanks dropped."""
    return [p.strip().strip(",").strip() for p in _URL_SPLIT.split(cell.strip()) if p.strip().strip(",").strip()]


def host_problem(host: str) -> str | None:
    """Why `host` (a URL's host name, as `urlsplit(...).hostname` gives it) cannot be looked up in DNS, or
    None. Empty labels (`a..b`), labels over 63 characters, names over 253, and non-ASCII names that do
    not encode under IDNA 2008 / UTS 46 are refused here, so they never reach a resolver's codec (which
    raises `UnicodeError`)."""
    if ":" in host:  # an IPv6 literal (the brackets are gone)
        try:
            ipaddress.ip_address(host.split("%")[0])
        except ValueError:
            return f"malformed IPv6 address {host[:80]!r}"
        return None
    try:
        ascii_host = idna_host(host)
    except ValueError as exc:
        return f"host name {host[:80]!r} is not a valid DNS name: {exc}"
    name = ascii_host.removesuffix(".")
    if not name:
        return "URL has no host"
    if len(name) > 253:
        return f"host name is longer than 253 characters: {host[:80]!r}"
    for label in name.split("."):
        if not label:
            return f"host name {host[:80]!r} has an empty label"
        if len(label) > 63:
            return f"host name {host[:80]!r} has a label longer than 63 characters"
    return None


def idna_host(host: str) -> str:
    """The ASCII (A-label) form of a host name: non-ASCII names encoded with IDNA 2008 / UTS 46, ASCII
    names unchanged. `ValueError` (IDNAError and UnicodeError are ValueErrors) when it cannot be encoded."""
    if host.isascii():
        return host
    import idna

    return idna.encode(host, uts46=True).decode("ascii")


def ascii_url(url: str) -> str:
    """`url` with its host in ASCII form (`https://bücher.example/h` -> `https://xn--bcher-kva.example/h`):
    what DNS, the Host header and SNI see. Call it on a URL `url_problem` accepted."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if host.isascii():
        return url
    userinfo, at, hostport = parts.netloc.rpartition("@")
    port = f":{parts.port}" if parts.port is not None else ""
    return parts._replace(netloc=f"{userinfo}{at}{idna_host(host)}{port}").geturl()


def url_problem(url: str, max_chars: int = 2048) -> str | None:
    """Why `url` is not an absolute http(s) URL we can fetch, or None."""
    if len(url) > max_chars:
        return f"URL is longer than {max_chars} characters"
    if any(c.isspace() for c in url) or control_character(url):
        return f"URL contains whitespace or control characters: {url[:80]!r}"
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises on a non-numeric port
    except ValueError as exc:
        return f"malformed URL {url[:80]!r}: {exc}"
    if parts.scheme.lower() not in ("http", "https"):
        return f"not an absolute http(s) URL: {url[:80]!r}"
    if not parts.hostname:
        return f"URL has no host: {url[:80]!r}"
    return host_problem(parts.hostname)


def dialect_of(header_line: str) -> dict:
    """The `csv.reader` options for a file whose first line is `header_line`.

    Dialects seen in the wild, all unambiguous: a space after each delimiter, also before a quoted cell
    (`1, SKU1, "https://a/1.jpg,https://a/2.jpg"`: one product, two URLs); and the `;` (or tab) that
    spreadsheets in `;`-separator locales write instead of `,`. The delimiter is the one that splits
    the header into the three known columns (`,` when none does: the header check then says why)."""
    options = {"strict": False, "skipinitialspace": True}
    for delimiter in (",", ";", "\t"):
        cells = next(csv.reader([header_line], delimiter=delimiter, **options), [])
        known = [next((c for c, al in _ALIASES.items() if _norm_header(cell) in al), None) for cell in cells]
        if len(cells) >= 3 and set(known[:3]) == set(COLUMNS):
            return {**options, "delimiter": delimiter}
    return {**options, "delimiter": ","}


def _map_header(header: list[str], col: _Collector) -> dict[str, int] | None:
    names = [h.strip() for h in header]
    mapping: dict[str, int] = {}
    unknown: list[tuple[int, str]] = []
    for i, raw in enumerate(names):
        norm = _norm_header(raw)
        target = next((c for c, al in _ALIASES.items() if norm in al), None)
        if target and target not in mapping:
            mapping[target] = i
        elif raw:
            unknown.append((i, raw))
    missing = [c for c in COLUMNS if c not in mapping]
    if not mapping:
        col.add(
            1,
            None,
            f"missing header row: the first line must be '{','.join(COLUMNS)}' (found {','.join(names)[:120]!r})",
        )
        return None
    for c in missing:
        col.add(1, c, f"missing column {c!r} (header must be '{','.join(COLUMNS)}')")
    for _, raw in unknown:
        hint = (
            " (this looks like an output CSV; upload the input file)" if _norm_header(raw) == "outputimageurls" else ""
        )
        col.add(1, raw, f"unexpected column {raw!r}{hint}")
    if missing or unknown:
        return None
    if [mapping[c] for c in COLUMNS] != [0, 1, 2]:
        col.add(1, None, f"columns must be in the order '{','.join(COLUMNS)}'")
        return None
    return mapping


def parse_csv(
    data: bytes | str, limits: CsvLimits | None = None, on_row: Callable[[ProductRow], None] | None = None
) -> CsvParseResult:
    """Parse and validate a whole upload. `result.errors` lists every problem (capped).

    With `on_row`, each valid row is handed to it as it is parsed instead of being kept in `result.rows`
    (a caller that streams the rows somewhere must discard what it got if `result.ok` is false).
    """
    limits = limits or CsvLimits()
    result = CsvParseResult()
    keep = on_row or result.rows.append
    col = _Collector(result, limits.max_errors)
    if isinstance(data, bytes):
        text, err = decode_csv_bytes(data)
        if err:
            result.kind = "encoding"
            result.errors.append(err)
            return result
    else:
        text = data.removeprefix("\ufeff")
    assert text is not None
    if not text.strip():
        col.add(0, None, "file is empty")
        return result

    # Lines are sliced off `text` one at a time, split exactly as `io.StringIO(text, newline="")` would
    # (at \r\n, \r or \n, kept): a StringIO holds its own copy at 4 bytes a character, 5x the upload.
    lines = (m.group() for m in _LINES.finditer(text))
    first = next(lines, "")
    reader = csv.reader(itertools.chain([first], lines), **dialect_of(first))
    try:
        header = next(reader)
    except csv.Error as exc:
        col.add(1, None, f"unreadable CSV: {exc}")
        return result
    if _map_header(header, col) is None:
        return result

    seen_serials: dict[str, int] = {}
    data_rows = 0
    try:
        for cells in reader:
            line = reader.line_num
            if not any(c.strip() for c in cells):
                continue  # blank lines are not products
            data_rows += 1
            if data_rows > limits.max_rows:
                result.kind = "too_many_rows"
                col.add(line, None, f"too many rows: at most {limits.max_rows} products per file")
                break
            _parse_row(cells, line, limits, col, seen_serials, result, keep)
    except csv.Error as exc:
        col.add(reader.line_num, None, f"unreadable CSV: {exc}")
    if data_rows == 0 and not result.errors:
        col.add(2, None, "no products: the file has a header but no rows")
    if result.errors:
        result.rows = []
        result.row_count = result.url_count = 0
    return result


def _parse_row(
    cells: list[str],
    line: int,
    limits: CsvLimits,
    col: _Collector,
    seen: dict[str, int],
    result: CsvParseResult,
    keep: Callable[[ProductRow], None],
) -> None:
    before = len(result.errors)
    for i, cell in enumerate(cells):
        if len(cell) > limits.max_cell_chars:
            name = COLUMNS[i] if i < 3 else f"column {i + 1}"
            col.add(line, name, f"cell is longer than {limits.max_cell_chars} characters")
    if len(result.errors) > before:
        return
    if len(cells) < 3:
        missing = COLUMNS[len(cells) :]
        col.add(line, missing[0], f"row has {len(cells)} cells, expected 3 (missing {', '.join(missing)})")
        return
    serial, name = clean_text(cells[0]), clean_text(cells[1])
    for column, value in ((SERIAL, serial), (NAME, name)):
        bad = control_character(value)
        if bad:
            col.add(line, column, f"control character U+{ord(bad):04X} in the cell; remove it")
    url_cells = cells[2:]
    # Unquoted URL lists spill into extra columns; accept that only when every extra cell is a URL.
    for extra in url_cells[1:]:
        if extra.strip() and url_problem(extra.strip(), limits.max_url_chars):
            col.add(
                line,
                f"column {cells.index(extra) + 1}",
                f"extra column with a value that is not a URL: {extra.strip()[:80]!r}; quote the URL cell",
            )
    if not serial:
        col.add(line, SERIAL, "empty cell")
    elif serial in seen:
        col.add(line, SERIAL, f"duplicate S.No. {serial!r} (first used on row {seen[serial]})")
    else:
        seen[serial] = line
    if not name:
        col.add(line, NAME, "empty cell")
    urls = [u for c in url_cells for u in split_urls(c)]
    if not urls:
        col.add(line, URLS, "empty cell: at least one image URL is required")
    elif len(urls) > limits.max_urls_per_row:
        col.add(line, URLS, f"{len(urls)} URLs in one row; at most {limits.max_urls_per_row}")
    else:
        for u in urls:
            problem = url_problem(u, limits.max_url_chars)
            if problem:
                col.add(line, URLS, problem)
    if len(result.errors) == before and not result.errors:  # once refused, the rows are discarded anyway
        result.row_count += 1
        result.url_count += len(urls)
        keep(ProductRow(row=line, serial=serial, name=name, urls=tuple(urls)))


def _lines_of(chunks: Iterable[bytes]) -> Iterator[str]:
    """The lines of a UTF-8 (BOM allowed) byte stream, split as `parse_csv` splits them, decoded as the
    chunks arrive: a consumer that stops early never reads the rest."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    rest = ""
    for chunk in chunks:
        rest += decoder.decode(chunk)
        lines = [m.group() for m in _LINES.finditer(rest)]
        # The last piece may be a line still arriving (or a \r whose \n is in the next chunk).
        rest = lines.pop() if lines else ""
        yield from lines
    rest += decoder.decode(b"", final=True)
    yield from (m.group() for m in _LINES.finditer(rest))


def iter_csv_rows(chunks: Iterable[bytes], limits: CsvLimits | None = None) -> Iterator[ProductRow]:
    """The products of a CSV that `parse_csv` already accepted (a stored upload), parsed lazily from its
    bytes as they are read: the first page of a large file costs its first rows, not the whole file.
    Stops at the first problem (an accepted file has none)."""
    limits = limits or CsvLimits()
    result = CsvParseResult()
    col = _Collector(result, 1)
    lines = _lines_of(chunks)
    first = next(lines, "")
    reader = csv.reader(itertools.chain([first], lines), **dialect_of(first))
    try:
        if _map_header(next(reader, []), col) is None:
            return
        seen: dict[str, int] = {}
        rows: list[ProductRow] = []
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue
            _parse_row(cells, reader.line_num, limits, col, seen, result, rows.append)
            if result.errors:
                return
            yield from rows
            rows.clear()
    except (csv.Error, UnicodeDecodeError):
        return
