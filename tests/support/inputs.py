"""What the tests feed the product: images, CSVs, and the real-world CSVs of other implementations."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image

from tests.support.paths import ROOT


def make_image(
    fmt: str = "JPEG", size: tuple[int, int] = (320, 240), mode: str = "RGB", seed: int = 1, **save_kwargs
) -> bytes:
    """A noisy photo-like image (noise keeps JPEG sizes realistic) in any mode/format."""
    import random

    rnd = random.Random(seed)
    base = Image.effect_noise(size, 40).convert("L")
    rgb = Image.merge("RGB", [base.point(lambda v, k=k: (v + k * 60 + rnd.randint(0, 40)) % 256) for k in range(3)])
    img = rgb.convert(mode) if mode != "RGB" else rgb
    buf = io.BytesIO()
    if fmt == "JPEG" and "quality" not in save_kwargs:
        save_kwargs["quality"] = 95
    img.save(buf, fmt, **save_kwargs)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims `width` x `height` pixels but carries almost no data (a pixel bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = chunk(b"IDAT", zlib.compress(b"\x00" * 10))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + idat + chunk(b"IEND", b"")


def csv_bytes(rows: list[tuple[str, str, list[str]]]) -> bytes:
    import csv as _csv

    buf = io.StringIO()
    w = _csv.writer(buf)
    w.writerow(["S.No.", "Product Name", "Input Image Urls"])
    for serial, name, urls in rows:
        w.writerow([serial, name, ", ".join(urls)])
    return buf.getvalue().encode()


# Real-world CSVs written for other implementations of this job (copied from the team's shared/fixtures,
# so a clone anywhere has them; test_fixture_copy_matches_the_shared_set keeps the copy honest).
PEERS = ROOT / "tests" / "fixtures" / "peers"
SHARED_PEERS = ROOT.parent / "shared" / "fixtures" / "peers"

# Each real-world file from other implementations: accepted (with its row count), or refused with a clear message.
ACCEPTED = {
    "coderchirag-quoting.csv": 9,  # odd quoting in names is data; "1." serials are fine
    "kumarsatwik-unquoted.csv": 5,  # URL lists not quoted: the spilled cells are all URLs
    "shimbhu77-querystrings.csv": 3,  # " , " separators, query strings with %3D and &
    "smit4297-picsum.csv": 2,  # "Serial Number" header spelling
    "stoneraptor5870-input-no-final-newline.csv": 3,
}
REFUSED = {
    "sachin108-no-header.csv": "missing header row",
    "stoneraptor5870-expected-output.csv": "looks like an output CSV",
}


def progressive_scan_bomb(size: tuple[int, int] = (2000, 2000), scans: int = 1000) -> bytes:
    """A small progressive JPEG whose last scan is repeated `scans` times: libjpeg-turbo's documented
    decode-time DoS (each scan costs a pass over the whole image; decoders only warn about the repeats)."""
    buf = io.BytesIO()
    Image.new("RGB", size, (120, 130, 140)).save(buf, "JPEG", progressive=True, quality=90)
    data = buf.getvalue()
    last = data.rfind(b"\xff\xda")
    return data[:-2] + data[last:-2] * scans + b"\xff\xd9"
